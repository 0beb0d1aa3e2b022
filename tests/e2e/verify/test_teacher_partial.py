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


# ------------------------- a 16-bit teacher's layers kept in part, in place
def _st16_teacher(path, tensors, dtype):
    """safetensors of float16 ("F16") or bfloat16 ("BF16") tensors, given
    as their 16-bit patterns (uint16 arrays)."""
    import json
    header, data = {}, b""
    for n, a in tensors.items():
        raw = a.astype("<u2").tobytes()
        header[n] = {"dtype": dtype, "shape": list(a.shape),
                     "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header).encode()
    path.write_bytes(len(h).to_bytes(8, "little") + h + data)
    return path


def _to16(a, dtype):
    """float32 -> (16-bit patterns, their values as float32)."""
    if dtype == "F16":
        h = a.astype(np.float16)
        return h.view(np.uint16), h.astype(np.float32)
    u = a.view(np.uint32)
    b = ((u + np.uint32(0x7fff) + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return b, (b.astype(np.uint32) << 16).view(np.float32)


def _layers16(dtype, seed=57, n=3):
    rng = np.random.default_rng(seed)
    return {f"encoder.layer.{i}.intermediate.dense.weight":
            _to16((rng.standard_normal((256, 64)) / 8).astype(np.float32), dtype)
            for i in range(n)}


@pytest.mark.parametrize("student", ["float32", "float16"])
@pytest.mark.parametrize("dtype", ["F16", "BF16"])
def test_sixteen_bit_teacher_kept_in_part_fails(nexus, tmp_path, dtype, student):
    """A float16 or bfloat16 teacher's values are all on the float16
    lattice, which the count of parts kept in place left out: 40% of
    three of its layers kept in place (77 KiB at float32 size) passed."""
    layers = _layers16(dtype)
    teacher = _st16_teacher(tmp_path / "t.safetensors", {k: b for k, (b, _) in layers.items()},
                            dtype)
    rng = np.random.default_rng(58)
    st = {}
    for i, (_, v) in enumerate(layers.values()):
        keep = rng.random(v.shape) < 0.4
        w = np.where(keep, v, (rng.standard_normal(v.shape) / 8).astype(np.float32))
        st[f"w{i}"] = w.astype(np.float16) if student == "float16" else w
    rc, out = _inspect(nexus, _onnx_student(tmp_path / "s.onnx", st), teacher)
    assert rc == 1 and "hold the values of encoder.layer." in out, out


@pytest.mark.parametrize("student", ["float32", "float16", "lattice"])
@pytest.mark.parametrize("dtype", ["F16", "BF16"])
def test_independent_student_of_a_sixteen_bit_teacher_passes(nexus, tmp_path, dtype, student):
    """No false alarm: a student of the teacher's shapes drawn from the
    same distribution, independently, in float16 too, or on the
    teacher's own 16-bit lattice widened (whose values coincide with the
    teacher's by chance far more often than float32 ones)."""
    layers = _layers16(dtype, n=6)
    teacher = _st16_teacher(tmp_path / "t.safetensors", {k: b for k, (b, _) in layers.items()},
                            dtype)
    rng = np.random.default_rng(59)
    st = {}
    for i in range(6):
        w = (rng.standard_normal((256, 64)) / 8).astype(np.float32)
        st[f"w{i}"] = (w.astype(np.float16) if student == "float16"
                       else _to16(w, dtype)[1] if student == "lattice" else w)
    rc, out = _inspect(nexus, _onnx_student(tmp_path / "s.onnx", st), teacher)
    assert rc == 0, out


# ---------------- review B of stop 21: closed (values3)
@pytest.mark.parametrize("scale", [2.0, 0.5, -4.0])
@pytest.mark.parametrize("dtype", ["F16", "BF16"])
def test_sixteen_bit_teacher_kept_in_part_and_scaled_fails(nexus, tmp_path, dtype, scale):
    """A 16-bit teacher's parts kept in place, then scaled by a power of
    two (lossless): the exact count saw none of them (3 x 40% of 64 KiB
    layers at float32 size passed)."""
    layers = _layers16(dtype)
    teacher = _st16_teacher(tmp_path / "t.safetensors", {k: b for k, (b, _) in layers.items()},
                            dtype)
    rng = np.random.default_rng(58)
    st = {}
    for i, (_, v) in enumerate(layers.values()):
        keep = rng.random(v.shape) < 0.4
        noise = (rng.standard_normal(v.shape) / 8).astype(np.float32)
        st[f"w{i}"] = np.where(keep, v * np.float32(scale), noise).astype(np.float32)
    rc, out = _inspect(nexus, _onnx_student(tmp_path / "s.onnx", st), teacher)
    assert rc == 1 and "hold the values of encoder.layer." in out, out


def _mixed_twins(t, rng, p_exact=0.48, p_twin=0.48):
    """t's values shuffled: p_exact as they are, p_twin as their twin
    (`bits ^ 1`), the rest `bits ^ 2` (all within 2 ulp)."""
    u = t.reshape(-1).view(np.uint32).copy()
    r = rng.random(u.size)
    u = np.where(r < p_exact, u, np.where(r < p_exact + p_twin, u ^ np.uint32(1),
                                          u ^ np.uint32(2)))
    return u[rng.permutation(u.size)].view(np.float32)


def test_layers_shuffled_half_exact_half_twins_fail(nexus, tmp_path):
    """48% of each value exact, 48% as its twin, 4% `^ 2`: neither the
    hits nor the decoys reach half of the samples; a sample held as itself
    or its twin, against a second keyed decoy, does."""
    layers = _layers()
    teacher = onnx_teacher(tmp_path / "t.onnx", layers)
    rng = np.random.default_rng(7)
    st = {f"w{i}": _mixed_twins(t, rng).reshape(t.shape) for i, t in enumerate(layers.values())}
    rc, out = _inspect(nexus, _onnx_student(tmp_path / "s.onnx", st), teacher)
    assert rc == 1 and out.count("hold the values of encoder.layer.") == 3, out


@pytest.mark.parametrize("case", ["twins", "unrelated"])
def test_twins_padded_past_four_million_elements(nexus, tmp_path, case):
    """A layer permuted, each value with its twin, padded with unrelated
    values to 2^22 + 2^16 elements (past the size the twin rule stopped
    at): found; the same tensor without the layer passes."""
    layers = _layers(n=1)
    teacher = onnx_teacher(tmp_path / "t.onnx", layers)
    t = next(iter(layers.values())).ravel()
    rng = np.random.default_rng(60)
    pad = (rng.standard_normal((1 << 22) + (1 << 16)) / 8).astype(np.float32)
    if case == "twins":
        u = rng.permutation(t).view(np.uint32)
        pad[:2 * t.size] = np.stack([u, u ^ np.uint32(1)], 1).ravel().view(np.float32)
    rc, out = _inspect(nexus, _onnx_student(tmp_path / "s.onnx", {"w": pad.reshape(-1, 64)}),
                       teacher)
    assert rc == (1 if case == "twins" else 0), out
    if case == "twins":
        assert "hold the values of encoder.layer.0" in out, out


def test_one_teacher_layer_held_two_ways_counts_both(nexus, tmp_path):
    """review B of stop 22: one 64 KiB layer in one student tensor, 60 rows
    re-encoded (a v + b: 15 KiB of blocks) and 30% of the other rows'
    elements kept in place (14.5 KiB): each kind under 16 KiB, 29.5 KiB of
    the layer; counted once, at the larger kind, it passed"""
    rng = np.random.default_rng(50)
    x = (rng.standard_normal((256, 64)) / 8).astype(np.float32)
    teacher = onnx_teacher(tmp_path / "t.onnx", {"encoder.layer.0.intermediate.dense.weight": x})
    r = np.random.default_rng(3)
    s = (r.standard_normal(x.shape) / 8).astype(np.float32)
    a = r.uniform(0.5, 2, (60, 1)).astype(np.float32)
    b = r.uniform(-.1, .1, (60, 1)).astype(np.float32)
    s[:60] = (a * x[:60] + b).astype(np.float32)
    keep = r.random((196, 64)) < 0.3
    s[60:] = np.where(keep, x[60:], s[60:])
    rc, out = _inspect(nexus, _onnx_student(tmp_path / "s.onnx", {"w": s}), teacher)
    assert rc == 1, out
