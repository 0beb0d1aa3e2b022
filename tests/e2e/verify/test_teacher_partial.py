"""The weights check (TRV-3): teacher tensors kept in part (some elements
exact in place, the rest noise), counted as the bytes the value sample's
hits imply, summed over the model (docs/TRV.md, "Partial copies"); and no
false alarm from a student that repeats its values (a random float16
tensor)."""
import subprocess

import numpy as np
import pytest

from .test_teacher_small import onnx_teacher


def _inspect(nexus, student, teacher):
    r = subprocess.run([nexus, "inspect", str(student), "--teacher", str(teacher)],
                       capture_output=True, text=True)
    assert r.returncode in (0, 1), r.stderr
    return r.returncode, r.stdout


def _onnx_student(path, tensors):
    return onnx_teacher(path, tensors)   # any ONNX file of initializers


def _fp16_lattice_teacher(rng):
    """Two 64 KiB teacher layers, 1 in 20 values on the float16 lattice
    (as a layer started from a float16 checkpoint keeps)."""
    out = {}
    for i in range(2):
        t = (rng.standard_normal((256, 64)) / 8).astype(np.float32)
        lat = rng.random(t.shape) < 0.05
        out[f"encoder.layer.{i}.output.dense.weight"] = np.where(
            lat, t.astype(np.float16).astype(np.float32), t)
    return out


def test_random_float16_student_repeating_its_values_passes(nexus, tmp_path):
    """bench/gen_model.py --dtype fp16: random bits (|x| < 2) in a block
    repeated; each float16 value is there hundreds of times, at every
    exponent.  A sampled teacher value on the float16 lattice was counted
    at each occurrence at each scale: half a tensor's samples, FAIL."""
    rng = np.random.default_rng(5)
    teacher = onnx_teacher(tmp_path / "t.onnx", _fp16_lattice_teacher(rng))
    bits = rng.integers(0, 1 << 16, 1 << 16, dtype=np.uint16) & np.uint16(0xBFFF)
    block = bits.view(np.float16)
    student = _onnx_student(tmp_path / "s.onnx",
                            {"emb": np.tile(block, 8).reshape(-1, 256)})
    rc, out = _inspect(nexus, student, teacher)
    assert rc == 0, out


def test_float16_copy_of_a_lattice_teacher_still_fails(nexus, tmp_path):
    rng = np.random.default_rng(5)
    layers = _fp16_lattice_teacher(rng)
    teacher = onnx_teacher(tmp_path / "t.onnx", layers)
    student = _onnx_student(tmp_path / "s.onnx", {"w": next(iter(layers.values()))
                                                  .astype(np.float16)})
    rc, out = _inspect(nexus, student, teacher)
    assert rc == 1 and "encoder.layer.0.output.dense.weight" in out, out
