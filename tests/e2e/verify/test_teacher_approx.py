"""The weights check (TRV-3): approximate copies of teacher tensors - the
correlation of same-size tensors (docs/TRV.md, "Approximate copies";
src/lib/fingerprint/fingerprint_corr.c).  A teacher tensor kept rounded,
noised, quantized or mapped by a x + b has new bytes and new values, but
its elements still follow the teacher's one for one; an independent
tensor of the same shape does not.  Red team 9's cases are in
test_redteam9.py."""
import json

import numpy as np
import pytest

from conftest import run
from verify_helpers import codes, verify
from .test_teacher_small import onnx_teacher, put_student, safetensors_teacher, torch_teacher

ROWS, COLS = 256, 64   # the fixture student's dense2 shape: 64 KiB of float32


def _layer(seed=11):
    return (np.random.default_rng(seed).standard_normal((ROWS, COLS)) / 8).astype(np.float32)


def _int8(t):
    return np.round(t / np.abs(t).max() * 127).astype(np.int8)


def _teacher(fmt, path, tensors):
    return {"onnx": onnx_teacher, "pt": torch_teacher,
            "safetensors": safetensors_teacher}[fmt](path.with_suffix("." + fmt), tensors)


def _five_changed(t):
    """Pearson's r drops under 0.99 (outliers); the ranks' stays near 1."""
    w = t.copy().ravel()
    w[[5, 500, 5000, 9000, 16000]] = np.float32(40)
    return w.reshape(t.shape)


# student dense2 from the teacher's layer t ([ROWS, COLS] unless said)
FORMS = {
    "float16, halved then rounded": lambda t: (t * np.float32(0.7)).astype(np.float16),
    "int8, reversed": lambda t: _int8(t.ravel()[::-1].copy()).reshape(t.shape),
    "-3 x + 0.01, noised": lambda t: (t * np.float32(-3) + np.float32(0.01) + np.random.default_rng(
        3).standard_normal(t.shape).astype(np.float32) * np.float32(0.004)),
    "tanh, five elements changed (ranks)": lambda t: _five_changed(np.tanh(t * np.float32(8))),
    "uint8 with a zero point": lambda t: np.clip(np.round(t / 0.004) + 128, 0, 255).astype(np.uint8),
}


@pytest.mark.parametrize("fmt", ["onnx", "pt", "safetensors"])
@pytest.mark.parametrize("form", sorted(FORMS))
def test_approximate_copy_fails(nexus, bundle, tmp_path, fmt, form):
    t = _layer()
    teacher = _teacher(fmt, tmp_path / "t", {"encoder.layer.3.output.dense.weight": t})
    put_student(bundle, {"dense2.weight": FORMS[form](t)})
    rc, rep = verify(nexus, bundle, "--teacher", teacher)
    assert rc == 1 and "teacher-tensor-copied" in codes(rep, "FAIL"), rep["findings"]
    msg = next(f["message"] for f in rep["findings"] if f["code"] == "teacher-tensor-copied")
    assert "approximately" in msg and "correlation r=" in msg, msg


def test_transposed_then_rounded_against_a_torch_checkpoint(nexus, bundle, tmp_path):
    """torch.onnx.export writes a Linear weight [out, in] as [in, out]: a
    checkpoint's [COLS, ROWS] weight lands in dense2 [ROWS, COLS]."""
    w = _layer(12).T.copy()                  # the checkpoint's [COLS, ROWS]
    teacher = torch_teacher(tmp_path / "t.pt", {"encoder.layer.3.output.dense.weight": w})
    put_student(bundle, {"dense2.weight": w.T.astype(np.float16).astype(np.float32)
                         * np.float32(1.5)})
    rc, rep = verify(nexus, bundle, "--teacher", teacher)
    assert rc == 1 and "teacher-tensor-copied" in codes(rep, "FAIL"), rep["findings"]
    msg = next(f["message"] for f in rep["findings"] if f["code"] == "teacher-tensor-copied")
    assert "transposed approximately" in msg, msg


@pytest.mark.parametrize("student", ["random float32", "random int8", "a ramp",
                                     "an exponential ramp", "zeros but a few",
                                     "a causal mask, as uint8"])
def test_independent_tensors_of_the_teachers_shapes_pass(nexus, bundle, tmp_path, student):
    """No false alarm: a student tensor of the teacher's shape, not derived
    from it (|r| ~ 0.03 over 1024 positions), and a ramp against a teacher
    ramp (a fill or a ramp, or any rising sequence, is not kept: any model
    may hold one), a rising sequence against a teacher's other one, and a
    tensor of ties (its ranks in index order would be a ramp), and a mask
    of the teacher's in another type (a few levels: structure, not
    training)."""
    rng = np.random.default_rng(77)
    ramp = np.linspace(-1, 1, ROWS * COLS, dtype=np.float32).reshape(ROWS, COLS)
    teacher = onnx_teacher(tmp_path / "t.onnx", {"encoder.layer.3.output.dense.weight": _layer(),
                                                 "position.ramp": ramp * np.float32(3),
                                                 "position.exp": np.exp(ramp * 5),
                                                 "attn.mask": np.tril(np.ones((128, 128),
                                                                              np.float32))})
    few = np.zeros((ROWS, COLS), np.float32)
    few[3, :] = rng.standard_normal(COLS).astype(np.float32)
    put_student(bundle, {"dense2.weight": {
        "random float32": (rng.standard_normal((ROWS, COLS)) / 8).astype(np.float32),
        "random int8": rng.integers(-127, 128, (ROWS, COLS)).astype(np.int8),
        "a ramp": ramp, "an exponential ramp": np.exp(ramp * 2) - 3,
        "zeros but a few": few,
        "a causal mask, as uint8": np.tril(np.ones((128, 128), np.uint8)).reshape(ROWS, COLS)
    }[student]})
    rc, rep = verify(nexus, bundle, "--teacher", teacher)
    assert "teacher-tensor-copied" not in codes(rep), rep["findings"]


def test_inspect_reports_an_approximate_copy(nexus, bundle, tmp_path):
    t = _layer()
    teacher = onnx_teacher(tmp_path / "t.onnx", {"encoder.layer.3.output.dense.weight": t})
    put_student(bundle, {"dense2.weight": _int8(t)})
    r = run(nexus, "inspect", bundle.root / "model/student_model.onnx", "--json",
            "--teacher", teacher)
    assert r.returncode == 1, r.stderr
    shared = json.loads(r.stdout)["shared_tensors"]
    assert [(s["tensor"], s["teacher_tensor"], s["approx"]) for s in shared] == [
        ("dense2.weight", "encoder.layer.3.output.dense.weight", True)], shared


def test_int8_with_a_scale_per_row_that_varies_a_lot_fails(nexus, bundle, tmp_path):
    """Rows of very different scales (x 2^-6 .. 2^6), quantized to int8 one
    scale a row: Pearson's r over the whole tensor drops under 0.99 and the
    ranks' too; the signs still agree at every nonzero position."""
    t = _layer() * np.exp2(np.random.default_rng(13).integers(-6, 7, (ROWS, 1))).astype(np.float32)
    teacher = onnx_teacher(tmp_path / "t.onnx", {"encoder.layer.3.output.dense.weight": t})
    q = np.round(t / np.abs(t).max(axis=1, keepdims=True) * 100).astype(np.int8)   # not 127
    put_student(bundle, {"dense2.weight": q})
    rc, rep = verify(nexus, bundle, "--teacher", teacher)
    assert rc == 1 and "teacher-tensor-copied" in codes(rep, "FAIL"), rep["findings"]
