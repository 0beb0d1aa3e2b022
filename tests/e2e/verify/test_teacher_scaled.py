"""The weights check (TRV-3), red team 8's two open classes fixed as
classes: a teacher tensor negated or scaled by any power of two (signs of
rows, columns or elements flipped too) is found by the value fingerprint,
and small teacher tensors held whole inside a larger student tensor (laid
end to end, or at any element offset among other data) count toward the
small-tensor sum (docs/TRV.md, "Re-encoded teacher tensors", "Small
teacher tensors").  The signed-build side: tests/e2e/verify/test_redteam8.py."""
import numpy as np
import pytest
from onnx import TensorProto, numpy_helper

from verify_helpers import verify
from .test_teacher_small import (bf16, bf16_tensor, fails_copied, no_copy, onnx_teacher,
                                 put_student, torch_teacher, vectors)

NAME = "encoder.layer.3.output.dense.weight"


def values_copied(nexus, bundle, teacher, *words):
    rc, rep = verify(nexus, bundle, "--teacher", teacher)
    found = [f for f in rep["findings"] if f["code"] == "teacher-values-copied"]
    assert rc == 1 and found and all(f["severity"] == "FAIL" for f in found), \
        [f["message"] for f in rep["findings"] if f["check"] == "weights"]
    text = " ".join(f["message"] for f in found)
    assert all(w in text for w in words), text


def layer(seed=5, shape=(256, 64)):
    return (np.random.default_rng(seed).standard_normal(shape) / 8).astype(np.float32)


def signs(shape, how, seed=6):
    rng = np.random.default_rng(seed)
    if how == "rows":
        return np.where(rng.random((shape[0], 1)) < 0.5, -1, 1).astype(np.float32)
    if how == "columns":
        return np.where(rng.random((1, shape[1])) < 0.5, -1, 1).astype(np.float32)
    return np.where(rng.random(shape) < 0.5, -1, 1).astype(np.float32)


# (scale, sign pattern, student dtype): every one an exact copy
SCALED = {
    "x -4": (-4.0, None, np.float32),
    "x 2^-6": (2.0 ** -6, None, np.float32),
    "x -2^10": (-(2.0 ** 10), None, np.float32),
    "x 2^40": (2.0 ** 40, None, np.float32),
    "row signs flipped": (1.0, "rows", np.float32),
    "column signs flipped, x 2^5": (32.0, "columns", np.float32),
    "element signs flipped, x 2^-9": (2.0 ** -9, "elements", np.float32),
    "x -2^-20 as float64": (-(2.0 ** -20), None, np.float64),
}


@pytest.mark.parametrize("case", sorted(SCALED))
def test_teacher_tensor_scaled_or_sign_flipped(nexus, bundle, tmp_path, case):
    scale, how, dtype = SCALED[case]
    t = layer()
    s = t * np.float32(scale) * (signs(t.shape, how) if how else np.float32(1))
    assert np.array_equal(np.abs(s / np.float32(scale)), np.abs(t))   # exact
    teacher = onnx_teacher(tmp_path / "t.onnx", {NAME: t})
    put_student(bundle, {"Wcopy": np.ascontiguousarray(s.T).astype(dtype)})
    values_copied(nexus, bundle, teacher, NAME)


# A 16-bit teacher form negated or scaled: 7 or 10 mantissa bits are too
# few for a value sample (an honest tensor holds them all), so the 16-bit
# forms are also chunked with signs cleared and exponents as differences
# (docs/TRV.md, "Re-encoded teacher tensors"; fingerprint_canon.c).
def _bf16_storage(seed, scale, signs_of=None):
    """A torch bfloat16 teacher tensor and the student: its values widened,
    times scale (and the sign pattern), exact in float32."""
    import torch
    t = torch.from_numpy(layer(seed)).bfloat16()
    s = t.float().numpy() * np.float32(scale)
    if signs_of:
        s = s * signs(s.shape, signs_of)
    return t, s


SIXTEEN = {
    # a bfloat16 storage, widened to float32, x -128
    "bfloat16 storage widened, x -128": lambda tp: (
        lambda t, s: (torch_teacher(tp / "t.pt", {NAME: t}), s))(*_bf16_storage(7, -128)),
    # a bfloat16 storage, widened, the sign of each row flipped at random
    "bfloat16 storage widened, row signs flipped": lambda tp: (
        lambda t, s: (torch_teacher(tp / "t.pt", {NAME: t}), s))(*_bf16_storage(11, 1, "rows")),
    # a bfloat16 storage, widened, x 2^20
    "bfloat16 storage widened, x 2^20": lambda tp: (
        lambda t, s: (torch_teacher(tp / "t.pt", {NAME: t}), s))(*_bf16_storage(12, 2.0 ** 20)),
    # a float32 teacher's float16 cast, x -4, held in float16
    "float32 teacher cast to float16, x -4": lambda tp: (
        onnx_teacher(tp / "t.onnx", {NAME: layer(8)}), (layer(8) * np.float32(-4)).astype(np.float16)),
    # a float32 teacher's float16 cast, x 2^-5, held in float16
    "float32 teacher cast to float16, x 2^-5": lambda tp: (
        onnx_teacher(tp / "t.onnx", {NAME: layer(13)}),
        (layer(13) * np.float32(2.0 ** -5)).astype(np.float16)),
    # a float16 ONNX teacher, widened and scaled past float16's range (x 2^20, x -2^-30)
    "float16 teacher widened, x 2^20": lambda tp: (
        onnx_teacher(tp / "t.onnx", {NAME: layer(18).astype(np.float16)}),
        layer(18).astype(np.float16).astype(np.float32) * np.float32(2.0 ** 20)),
    "float16 teacher widened, x -2^-30": lambda tp: (
        onnx_teacher(tp / "t.onnx", {NAME: layer(19).astype(np.float16)}),
        layer(19).astype(np.float16).astype(np.float32) * np.float32(-(2.0 ** -30))),
    # a float32 teacher's bfloat16 cast, element signs flipped, x 2^3, held in bfloat16
    "float32 teacher cast to bfloat16, element signs, x 8": lambda tp: (
        onnx_teacher(tp / "t.onnx", {NAME: layer(14)}),
        bf16_tensor("Wcopy", bf16(layer(14) * np.float32(8) * signs((256, 64), "elements"))[0])),
}


def copied_either_way(nexus, bundle, teacher, *words):
    """FAIL naming the teacher tensor: by its canonical 16-bit form, or (a
    16-bit teacher widened, held in float32: its value sample is keyed
    per run and may find it first) by values."""
    rc, rep = verify(nexus, bundle, "--teacher", teacher)
    found = [f for f in rep["findings"]
             if f["code"] in ("teacher-tensor-copied", "teacher-values-copied")]
    assert rc == 1 and found and all(f["severity"] == "FAIL" for f in found), \
        [f["message"] for f in rep["findings"] if f["check"] == "weights"]
    text = " ".join(f["message"] for f in found)
    assert all(w in text for w in words), text
    if not any(f["code"] == "teacher-values-copied" for f in found):
        assert "any sign or power-of-two scale" in text, text


@pytest.mark.parametrize("form", sorted(SIXTEEN))
def test_sixteen_bit_forms_negated_and_scaled(nexus, bundle, tmp_path, form):
    path, student = SIXTEEN[form](tmp_path)
    put_student(bundle, {"Wcopy": student})
    copied_either_way(nexus, bundle, path, NAME)


def test_small_sixteen_bit_forms_scaled_count(nexus, bundle, tmp_path):
    """16 x 3 KiB teacher vectors held as float16 x -2 (1.5 KiB each,
    24 KiB): whole copies of small teacher tensors in their canonical
    form, over the 16 KiB sum."""
    teacher = onnx_teacher(tmp_path / "t.onnx", vectors(16))
    put_student(bundle, {f"v{i}": (a * np.float32(-2)).astype(np.float16)
                         for i, a in enumerate(vectors(16).values())})
    fails_copied(nexus, bundle, teacher, "small teacher tensors", "any sign or power-of-two scale")


def test_sixteen_bit_piece_scaled_inside_a_larger_tensor(nexus, bundle, tmp_path):
    """Half of a float32 teacher's float16 cast, x -2^3, among float16
    noise: its canonical chunks are found (4 KiB or more of them)."""
    t = layer(15)
    rng = np.random.default_rng(16)
    piece = (t[64:192] * np.float32(-8)).astype(np.float16)
    noise = (rng.standard_normal(3000) / 8).astype(np.float16)
    put_student(bundle, {"Wbig": np.concatenate([noise, piece.ravel(), noise[:1000]])})
    fails_copied(nexus, bundle, onnx_teacher(tmp_path / "t.onnx", {NAME: t}), NAME,
                 "any sign or power-of-two scale")


def test_honest_sixteen_bit_students_pass(nexus, bundle, tmp_path):
    """Unrelated 16-bit values of the teacher's distribution, at several
    scales and both signs, float16, bfloat16 and bfloat16-exact float32:
    nothing in common with the teacher's canonical forms."""
    teacher = onnx_teacher(tmp_path / "t.onnx", {NAME: layer(), "other": layer(9, (512, 64))})
    rng = np.random.default_rng(17)
    st = {f"H{k}": (rng.standard_normal((256, 64)) / 8 * 2.0 ** k).astype(np.float16)
          for k in (-3, 0, 2)}
    st["B"] = bf16_tensor("B", bf16((rng.standard_normal((256, 64)) / -8).astype(np.float32))[0])
    st["F"] = bf16((rng.standard_normal((256, 64)) / 8 * 64).astype(np.float32))[1]
    put_student(bundle, st)
    no_copy(nexus, bundle, teacher)


def test_honest_student_of_the_same_scale_passes(nexus, bundle, tmp_path):
    """Unrelated values drawn from the teacher's distribution, at several
    scales and both signs: no value match at any scale."""
    teacher = onnx_teacher(tmp_path / "t.onnx", {NAME: layer(), "other": layer(9, (512, 64))})
    rng = np.random.default_rng(10)
    put_student(bundle, {f"W{k}": (rng.standard_normal((256, 256)) / 8 * 2.0 ** k)
                         .astype(np.float32) for k in (-7, 0, 5)})
    no_copy(nexus, bundle, teacher)


# -------------------------------- small teacher tensors inside a bigger one
def _inside(vs, rng, dtype=np.float32):
    """vs laid among random filler, each at a random element offset."""
    parts = []
    for v in vs:
        parts += [(rng.standard_normal(int(rng.integers(1, 400))) / 16).astype(dtype), v]
    return np.concatenate(parts + [np.zeros(3, dtype)])


PACKED = {
    # 8 x 3 KiB inside one 50 KiB tensor among random data
    "float32 among noise": lambda tp, rng: (
        onnx_teacher(tp / "t.onnx", vectors(8)),
        {"big": _inside(list(vectors(8).values()), rng)}, ["24576 bytes"]),
    # 16 vectors cast to float16 (1.5 KiB each) end to end
    "float16 casts end to end": lambda tp, rng: (
        onnx_teacher(tp / "t.onnx", vectors(16)),
        {"big": np.concatenate([v.astype(np.float16) for v in vectors(16).values()])},
        ["as float16"]),
    # bfloat16 storages of a torch teacher, widened, among noise
    "pt bfloat16 widened among noise": lambda tp, rng: (
        torch_teacher(tp / "t.pt", {n: __import__("torch").from_numpy(a).bfloat16()
                                    for n, a in vectors(12, 1000).items()}),
        {"big": _inside([bf16(a)[1] for a in vectors(12, 1000).values()], rng)},
        ["widened to float32"]),
    # the bytes in a uint8 tensor, at an odd byte offset, split over two tensors
    "uint8 bytes at odd offsets": lambda tp, rng: (
        onnx_teacher(tp / "t.onnx", vectors(8)),
        {"b0": np.frombuffer(b"\x07" + b"".join(v.tobytes() for v in
                                                list(vectors(8).values())[:4]), np.uint8),
         "b1": np.frombuffer(b"\x01\x02\x03" + b"".join(v.tobytes() for v in
                                                         list(vectors(8).values())[4:]),
                             np.uint8)}, ["24576 bytes"]),
}


@pytest.mark.parametrize("case", sorted(PACKED))
def test_small_teacher_tensors_packed(nexus, bundle, tmp_path, case):
    teacher, tensors, words = PACKED[case](tmp_path, np.random.default_rng(3))
    put_student(bundle, tensors)
    fails_copied(nexus, bundle, teacher, "small teacher tensors", *words)


def _at_byte_offset(vs, off, dtype, rng):
    """vs' bytes laid among random filler whole elements of dtype, each
    starting `off` bytes into an element (inside it)."""
    w = np.dtype(dtype).itemsize
    raw = bytearray(rng.bytes(off))
    for v in vs:
        raw += (rng.standard_normal(int(rng.integers(1, 300))) / 16).astype(dtype).tobytes()
        raw += v.tobytes()
    raw += bytes(-len(raw) % w + w)
    return np.frombuffer(bytes(raw), dtype)


# (teacher vectors, student dtype, byte offset inside its elements)
INSIDE = {
    "float32, 1 byte in": (np.float32, 1, None),
    "float32, 2 bytes in": (np.float32, 2, None),
    "float32, 3 bytes in": (np.float32, 3, None),
    "float16 casts in float16, 1 byte in": (np.float16, 1, np.float16),
}


@pytest.mark.parametrize("case", sorted(INSIDE))
def test_small_teacher_tensors_inside_an_element(nexus, bundle, tmp_path, case):
    """A copy need not start on an element: 8 x 3 KiB teacher vectors (16
    float16 casts of 1.5 KiB) placed 1-3 bytes into the student's elements
    are found whole (an anchor at each of 8 consecutive bytes)."""
    dtype, off, cast = INSIDE[case]
    vs = list(vectors(16 if cast else 8).values())
    teacher = onnx_teacher(tmp_path / "t.onnx", vectors(16 if cast else 8))
    held = [v.astype(cast) for v in vs] if cast else vs
    put_student(bundle, {"big": _at_byte_offset(held, off, dtype, np.random.default_rng(off))})
    fails_copied(nexus, bundle, teacher, "small teacher tensors",
                 "as float16" if cast else "24576 bytes")


def test_packed_small_tensors_within_the_bound_pass(nexus, bundle, tmp_path):
    """4 x 3 KiB packed and one vector packed ten times (15 KiB in all) are
    under the 16 KiB bound: they pass, as their whole copies do."""
    teacher = onnx_teacher(tmp_path / "t.onnx", vectors(6))
    vs = list(vectors(6).values())
    rng = np.random.default_rng(4)
    put_student(bundle, {"big": _inside(vs[:4], rng), "rep": np.concatenate([vs[5]] * 10)})
    no_copy(nexus, bundle, teacher)


@pytest.mark.parametrize("student_dtype", ["float16", "float32 (the fp16 cast widened, x 2^20)"])
def test_small_copy_does_not_hide_a_scaled_layer_beside_it(nexus, bundle, tmp_path,
                                                            student_dtype):
    """One small teacher vector held whole (1 KiB, under the 16 KiB sum, so
    no finding of its own) in front of a 16-bit teacher layer x -2: the
    small hit switched the tensor's canonical forms off (review)."""
    t = layer(21)
    s = (np.random.default_rng(22).standard_normal(256) / 8).astype(np.float32)
    teacher = onnx_teacher(tmp_path / "t.onnx", {NAME: t, "encoder.small.bias": s})
    if student_dtype == "float16":
        w = np.concatenate([s.astype(np.float16),
                            (t.ravel() * np.float32(-2)).astype(np.float16)])
    else:
        w = np.concatenate([s, t.ravel().astype(np.float16).astype(np.float32)
                            * np.float32(2.0 ** 20)])
    put_student(bundle, {"Wmixed": w})
    copied_either_way(nexus, bundle, teacher, NAME)
