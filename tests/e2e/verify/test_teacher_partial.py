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


# ------------------------------------------------ teacher layers kept in part
def _layers(seed=50, n=3):
    rng = np.random.default_rng(seed)
    return {f"encoder.layer.{i}.intermediate.dense.weight":
            (rng.standard_normal((256, 64)) / 8).astype(np.float32) for i in range(n)}


def _kept(t, frac, rng, form=lambda x, rng: x):
    """t with a fraction frac of its elements kept (through form) at
    random positions, the rest noise of its scale."""
    keep = rng.random(t.shape) < frac
    noise = (rng.standard_normal(t.shape) / 8).astype(np.float32)
    return np.where(keep, form(t, rng), noise).astype(np.float32)


def _pow2(t, rng):      # each element scaled by its own power of two
    return (t * np.exp2(rng.integers(-3, 4, t.shape))).astype(np.float32)


def _lowbit(t, rng):    # the lowest mantissa bit flipped: the decoys are the copy
    return (t.view(np.uint32) ^ np.uint32(1)).view(np.float32)


# three 64 KiB teacher layers, each kept in part in place
PARTS = {
    "15% kept": lambda t, rng: _kept(t, 0.15, rng),
    "40% kept, reversed": lambda t, rng: _kept(t, 0.40, rng)[::-1, ::-1].copy(),
    "30% kept, each element x its own power of two": lambda t, rng: _kept(t, 0.30, rng, _pow2),
    "30% kept, lowest bit flipped": lambda t, rng: _kept(t, 0.30, rng, _lowbit),
}


@pytest.mark.parametrize("case", sorted(PARTS))
def test_teacher_layers_kept_in_part_fail(nexus, bundle, tmp_path, case):
    from verify_helpers import codes, verify
    from .test_teacher_small import put_student
    layers = _layers()
    teacher = onnx_teacher(tmp_path / "t.onnx", layers)
    rng = np.random.default_rng(51)
    put_student(bundle, {f"w{i}": PARTS[case](t, rng) for i, t in enumerate(layers.values())})
    rc, rep = verify(nexus, bundle, "--teacher", teacher)
    assert rc == 1 and "teacher-values-copied" in codes(rep, "FAIL"), rep["findings"]
    msg = next(f["message"] for f in rep["findings"] if f["code"] == "teacher-values-copied")
    assert "in place" in msg and "implied in all" in msg, msg


def test_inspect_reports_a_part_kept_in_place(nexus, tmp_path):
    layers = _layers()
    teacher = onnx_teacher(tmp_path / "t.onnx", layers)
    rng = np.random.default_rng(55)
    st = {f"w{i}": _kept(t, 0.30, rng) for i, t in enumerate(layers.values())}
    rc, out = _inspect(nexus, _onnx_student(tmp_path / "s.onnx", st), teacher)
    assert rc == 1 and out.count("hold the values of encoder.layer.") == 3, out


def test_kept_part_transposed_fails(nexus, tmp_path):
    """The positions are read as torch.onnx.export writes a Linear weight
    too: a [64, 256] student tensor kept in part from a [256, 64] layer."""
    layers = _layers()
    teacher = onnx_teacher(tmp_path / "t.onnx", layers)
    rng = np.random.default_rng(52)
    st = {f"w{i}": _kept(t, 0.25, rng).T.copy() for i, t in enumerate(layers.values())}
    rc, out = _inspect(nexus, _onnx_student(tmp_path / "s.onnx", st), teacher)
    assert rc == 1 and "hold the values of" in out, out


def test_one_layer_kept_in_part_under_the_bound_passes(nexus, tmp_path):
    """10% of one 64 KiB layer implies ~6.5 KiB: under the 16 KiB bound."""
    layers = _layers(n=1)
    teacher = onnx_teacher(tmp_path / "t.onnx", layers)
    t = next(iter(layers.values()))
    rc, out = _inspect(nexus, _onnx_student(tmp_path / "s.onnx", {
        "w": _kept(t, 0.10, np.random.default_rng(53))}), teacher)
    assert rc == 0, out


@pytest.mark.parametrize("student", ["float32", "int8", "float32, a block repeated"])
def test_independent_students_of_the_teachers_shapes_pass(nexus, tmp_path, student):
    """No false alarm: independent tensors of the teacher layers' shapes
    imply no bytes (hits and decoys alike)."""
    layers = _layers(n=6)
    teacher = onnx_teacher(tmp_path / "t.onnx", layers)
    rng = np.random.default_rng(54)
    block = (rng.standard_normal((16, 64)) / 8).astype(np.float32)
    st = {f"w{i}": {"float32": (rng.standard_normal((256, 64)) / 8).astype(np.float32),
                    "int8": rng.integers(-127, 128, (256, 64)).astype(np.int8),
                    "float32, a block repeated": np.tile(block, (16, 1))}[student]
          for i in range(6)}
    rc, out = _inspect(nexus, _onnx_student(tmp_path / "s.onnx", st), teacher)
    assert rc == 0, out


# -------------------------------- a layer permuted, each value with a twin
def _twin_xor1(u):
    return u ^ np.uint32(1)


def _twin_xor2(u):
    return u ^ np.uint32(2)


def _twin_next(u):      # the next float up (in magnitude)
    return u + np.uint32(1)


TWINS = {"bits ^ 1 (the decoy itself)": _twin_xor1, "bits ^ 2": _twin_xor2,
         "the next float": _twin_next}


@pytest.mark.parametrize("twin", sorted(TWINS))
def test_layer_permuted_with_a_twin_after_each_value_fails(nexus, tmp_path, twin):
    """The value sample's decoys are each sampled value with its lowest
    bit flipped; a copy holding every value and its twin (`bits ^ 1`)
    had as many decoys as hits, like chance, and passed."""
    layers = _layers(n=1)
    teacher = onnx_teacher(tmp_path / "t.onnx", layers)
    t = next(iter(layers.values())).ravel()
    u = np.random.default_rng(56).permutation(t).view(np.uint32)
    st = np.stack([u, TWINS[twin](u)], 1).ravel().view(np.float32).reshape(512, 64)
    rc, out = _inspect(nexus, _onnx_student(tmp_path / "s.onnx", {"w": st}), teacher)
    assert rc == 1 and "hold the values of encoder.layer.0" in out, out


def test_untrained_models_of_one_generator_pass(nexus, tmp_path):
    """No false alarm from the twin rule: two untrained torch models of one
    architecture, seeds apart, share more exact values than chance
    predicts for unrelated tensors (the same generator), and as many
    decoys; the largest tensor (3.9M elements: an embedding) is just
    under the size where the twin rule stops."""
    import torch

    def net(seed):
        torch.manual_seed(seed)
        m = torch.nn.Sequential(torch.nn.Embedding(30522, 128), torch.nn.Linear(128, 512),
                                torch.nn.Linear(512, 128), torch.nn.LayerNorm(128))
        return {k: v.detach().numpy().copy() for k, v in m.state_dict().items()}

    teacher = onnx_teacher(tmp_path / "t.onnx", net(0))
    rc, out = _inspect(nexus, _onnx_student(tmp_path / "s.onnx", net(1)), teacher)
    assert rc == 0, out
