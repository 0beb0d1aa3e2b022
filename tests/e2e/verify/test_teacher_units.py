"""The weights check (TRV-3): teacher vectors re-encoded one by one - the
per-vector fingerprints (docs/TRV.md, "Re-encoded vectors";
src/lib/fingerprint/fingerprint_units.c).  A teacher layer kept as a
network of the same function (hidden units permuted or sign-flipped,
output columns scaled, a unit padded, axes swapped, each vector quantized
with its own scale and zero point) keeps whole rows and columns of the
teacher up to a v + b; each aligned block of 64 of them is found.  Red
team 10's forms are in test_redteam10.py; these guard each kind of map,
each teacher format, the 16 KiB bound, and honest students."""
import numpy as np
import pytest

from verify_helpers import codes, verify
from .test_teacher_small import onnx_teacher, put_student, safetensors_teacher

# red team 10's teacher pair: [64, 256] and [256, 64], and its rounding
# to 16 mantissa bits
from .test_redteam10 import D, H, T1_NAME as T1, T2_NAME as T2
from .test_redteam10 import _rounded as _round16
from .test_redteam10 import teacher_pair as _pair


def _permuted_signed(t1, t2):
    rng = np.random.default_rng(5)
    p, sg = rng.permutation(H), np.where(rng.random(H) < 0.5, -1, 1).astype(np.float32)
    return {"w1": _round16((t1 * sg)[:, p]), "w2": _round16((t2 * sg[:, None])[p])}


def _scaled(t1, t2):
    rng = np.random.default_rng(6)
    c1 = (10.0 ** rng.uniform(-2, 2, H) * np.where(rng.random(H) < 0.5, -1, 1)).astype(np.float32)
    c2 = (10.0 ** rng.uniform(-2, 2, D)).astype(np.float32)
    return {"w1": t1 * c1, "c1": c1, "w2": t2 * c2, "c2": c2}


def _uint8_per_vector(t1, t2):
    """uint8 codes, a scale and zero point per teacher column (30 levels)"""
    out = {}
    for name, t in (("q1", t1.T), ("q2", t2.T)):
        lo, hi = t.min(1, keepdims=True), t.max(1, keepdims=True)
        s = (hi - lo) / 30
        out[name] = np.clip(np.round((t - lo) / s) + 40, 0, 255).astype(np.uint8)
    return out


def _axes_swapped_f16(t1, t2):
    return {"w1": t1.reshape(D, 4, 64).transpose(1, 0, 2).astype(np.float16),
            "w2": t2.reshape(4, 64, 64).transpose(1, 0, 2).copy()}


def _toward_zero_f16(t1, t2):
    """float16 rounded toward zero, one hidden unit padded"""
    def tz(t):
        h = t.astype(np.float16)
        return np.where(np.abs(h.astype(np.float32)) > np.abs(t), np.nextafter(h, np.float16(0)),
                        h).astype(np.float16)
    pad = np.random.default_rng(7).standard_normal((D, 1)).astype(np.float32)
    return {"w1": tz(np.concatenate([t1, pad], 1)),
            "w2": tz(np.concatenate([t2, np.zeros((1, D), np.float32)], 0))}


FORMS = {"permuted, sign-flipped, rounded": _permuted_signed,
         "output columns scaled (any sign)": _scaled,
         "uint8, a zero point per vector": _uint8_per_vector,
         "3-D axes swapped, float16": _axes_swapped_f16,
         "float16 toward zero, padded": _toward_zero_f16}


def _units_msg(rep):
    return [f["message"] for f in rep["findings"]
            if f["code"] == "teacher-tensor-copied" and "re-encoded vectors" in f["message"]]


@pytest.mark.parametrize("form", sorted(FORMS))
def test_reencoded_vectors_fail(nexus, bundle, tmp_path, form):
    t1, t2 = _pair()
    teacher = onnx_teacher(tmp_path / "t.onnx", {T1: t1, T2: t2})
    put_student(bundle, FORMS[form](t1, t2))
    rc, rep = verify(nexus, bundle, "--teacher", teacher)
    assert rc == 1 and _units_msg(rep), rep["findings"]
    assert "blocks of 64 elements" in _units_msg(rep)[0]


def test_reencoded_rows_of_a_safetensors_teacher(nexus, bundle, tmp_path):
    """the shape from the safetensors header: the rows of a [256, 64] matrix"""
    t1, t2 = _pair(12)
    teacher = safetensors_teacher(tmp_path / "t.safetensors", {T2: t2})
    rng = np.random.default_rng(8)
    put_student(bundle, {"w2": (t2[rng.permutation(H)] * np.float32(-0.3) + np.float32(2))
                         .astype(np.float16)})
    rc, rep = verify(nexus, bundle, "--teacher", teacher)
    assert rc == 1 and _units_msg(rep), rep["findings"]


@pytest.mark.parametrize("units,caught", [(48, False), (80, True)])
def test_the_small_copy_bound(nexus, bundle, tmp_path, units, caught):
    """64 elements of float32 a block: 48 teacher columns are 12 KiB (under
    the 16 KiB any student may share), 80 are 20 KiB"""
    t1, _ = _pair()
    teacher = onnx_teacher(tmp_path / "t.onnx", {T1: t1})
    rng = np.random.default_rng(9)
    mine = (rng.standard_normal((D, H)) / 8).astype(np.float32)
    mine[:, :units] = _round16(t1[:, rng.permutation(H)[:units]] * np.float32(-2))
    put_student(bundle, {"w1": mine})
    rc, rep = verify(nexus, bundle, "--teacher", teacher)
    assert bool(_units_msg(rep)) == caught, rep["findings"]


def _sinusoidal(n, d):
    pos = np.arange(n)[:, None]
    w = 1.0 / 10000 ** (np.arange(0, d, 2) / d)
    t = np.zeros((n, d), np.float32)
    t[:, 0::2], t[:, 1::2] = np.sin(pos * w), np.cos(pos * w)
    return t


def _halves(t):
    return np.concatenate([t[:, 0::2], t[:, 1::2]], 1)


def _fine_tuned(t):
    return t + (np.random.default_rng(4).standard_normal(t.shape) / 1000).astype(np.float32)


@pytest.mark.parametrize("student", ["random float32", "random int8", "trained apart",
                                     "a longer sinusoidal table, fine-tuned",
                                     "a longer sinusoidal table in halves, fine-tuned"])
def test_honest_students_pass(nexus, bundle, tmp_path, student):
    """No false alarm: tensors of the teacher's shapes not derived from it,
    the teacher's pair fitted apart (another seed), and a sinusoidal
    positional table of the teacher's formula (interleaved, or sines then
    cosines), longer and fine-tuned: a formula any model may hold, whose
    columns an order-2 recurrence predicts (the table is not kept)."""
    t1, t2 = _pair()
    teacher = onnx_teacher(tmp_path / "t.onnx", {
        T1: t1, T2: t2, "embeddings.position": _sinusoidal(128, 128),
        "embeddings.position2": _halves(_sinusoidal(128, 128))})
    rng = np.random.default_rng(10)
    o1, o2 = _pair(99)
    put_student(bundle, {
        "random float32": {"w1": (rng.standard_normal((D, H)) / 8).astype(np.float32)},
        "random int8": {"q1": rng.integers(-127, 128, (H, D)).astype(np.int8),
                        "q2": rng.integers(0, 255, (D, H)).astype(np.uint8)},
        "trained apart": {"w1": o1, "w2": o2.astype(np.float16)},
        "a longer sinusoidal table, fine-tuned": {"pos": _fine_tuned(_sinusoidal(192, 128))},
        "a longer sinusoidal table in halves, fine-tuned": {
            "pos": _fine_tuned(_halves(_sinusoidal(192, 128)))},
    }[student])
    rc, rep = verify(nexus, bundle, "--teacher", teacher)
    assert "teacher-tensor-copied" not in codes(rep), rep["findings"]


def test_a_large_copy_is_confirmed_at_bounded_cost(nexus, tmp_path):
    """A student tensor that holds a teacher layer whole (rounded) has every
    block of it confirmed against the teacher file: a column block was 64
    reads of one element, so a 2.4M-element copy took 2.4M pread calls
    (15 s; the fold branch's report).  A teacher tensor's blocks found in
    one student tensor are confirmed up to a count far over the 16 KiB
    bound, then no more: the verdict is the same, the reads bounded."""
    import shutil
    import subprocess
    from onnx import TensorProto, helper, numpy_helper
    if not shutil.which("strace"):
        pytest.skip("strace is installed by scripts/setup.sh")
    t = (np.random.default_rng(8).standard_normal((1536, 1536)) / 40).astype(np.float32)
    teacher = onnx_teacher(tmp_path / "t.onnx", {"big": t})
    init = numpy_helper.from_array(t.astype(np.float16), "copy")
    g = helper.make_graph([helper.make_node("Identity", ["copy"], ["o"])], "s", [],
                          [helper.make_tensor_value_info("o", TensorProto.FLOAT16, None)],
                          [init])
    student = tmp_path / "s.onnx"
    student.write_bytes(helper.make_model(g).SerializeToString())
    log = tmp_path / "strace.log"
    r = subprocess.run(["strace", "-f", "-c", "-e", "trace=pread64", "-o", str(log), nexus,
                        "inspect", str(student), "--teacher", str(teacher)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 1 and "copy" in r.stdout, (r.stdout, r.stderr)
    calls = next(int(line.split()[3]) for line in log.read_text().splitlines()
                 if line.rstrip().endswith("pread64"))
    assert calls < 100_000, f"{calls} pread calls to fingerprint one 9 MB copy"


@pytest.mark.parametrize("dtype", ["int32", "uint32", "int64", "uint64"])
def test_integer_codes_are_read_as_vectors(nexus, bundle, tmp_path, dtype):
    """A teacher layer as 32- or 64-bit integer codes (round(T x 2^20),
    decoded by Cast and a Mul in the graph), its hidden units permuted and
    stacked with as many rows of another origin: the order-invariant
    vectors lose it among the noise rows' profile, the blocks keep every
    column of it (each a teacher column in order) - when they read the
    type (they read up to 16-bit integers before; red team 11)."""
    rng = np.random.default_rng(3)
    t1, _ = _pair()
    p = rng.permutation(H)
    off = 2.0 ** 30 if dtype.startswith("u") else 0.0
    codes_ = np.round(t1[:, p] * 2.0 ** 20) + off
    noise = np.round(rng.laplace(size=codes_.shape) * 2.0 ** 22) + off
    teacher = onnx_teacher(tmp_path / "t.onnx", {T1: t1})
    put_student(bundle, {"w1": np.concatenate([codes_, np.abs(noise) if off else noise])
                         .astype(dtype)})
    rc, rep = verify(nexus, bundle, "--teacher", teacher)
    assert rc == 1 and "teacher-tensor-copied" in codes(rep, "FAIL"), rep["findings"]


# ---------------- the bytes counted at float32 size, whatever the teacher's width
def _st_teacher(path, name, a, dtype):
    """safetensors of one tensor: F16 / BF16 (from float32, rounded), F64"""
    import json
    if dtype == "F64":
        raw, vals = a.astype("<f8").tobytes(), a.astype(np.float64)
    elif dtype == "F16":
        raw, vals = a.astype("<f2").tobytes(), a.astype(np.float16).astype(np.float32)
    else:
        u = a.view(np.uint32)
        b = ((u + np.uint32(0x7fff) + ((u >> 16) & 1)) >> 16).astype("<u2")
        raw, vals = b.tobytes(), (b.astype(np.uint32) << 16).view(np.float32)
    h = json.dumps({name: {"dtype": dtype, "shape": list(a.shape),
                           "data_offsets": [0, len(raw)]}}).encode()
    path.write_bytes(len(h).to_bytes(8, "little") + h + raw)
    return path, vals


def _rows_units_bytes(rep):
    return [p.get("sum_bytes", p["bytes"]) for p in rep.get("shared_tensors", [])
            if p.get("sum_part") == "re-encoded vectors"]


@pytest.mark.parametrize("rows,caught", [(56, False), (112, True)])
@pytest.mark.parametrize("dtype", ["F16", "BF16", "F64"])
def test_reencoded_rows_count_at_float32_size(nexus, tmp_path, dtype, rows, caught):
    """The 16 KiB any student may share is float32 bytes: 112 re-encoded
    rows of 64 elements are 28 KiB whatever the teacher stores (a 16-bit
    teacher's counted half, 14 KiB, and passed), 56 are 14 KiB (a float64
    teacher's counted double, 28 KiB, and failed)."""
    import json
    import subprocess
    rng = np.random.default_rng(9)
    a = (rng.standard_normal((256, 64)) / 8).astype(np.float32)
    teacher, vals = _st_teacher(tmp_path / "t.safetensors", "layer.weight", a, dtype)
    s = (rng.standard_normal((256, 64)) / 8).astype(np.float32)
    idx = np.r_[0:rows // 2, 64:64 + rows // 2]
    s[idx] = (vals[idx] * -2.5 + 0.01).astype(np.float32)
    r = subprocess.run([nexus, "inspect", str(onnx_teacher(tmp_path / "s.onnx", {"w": s})),
                        "--teacher", str(teacher), "--json"], capture_output=True, text=True)
    assert r.returncode == (1 if caught else 0), (r.stdout[-2000:], r.stderr[-2000:])
    if caught:
        assert _rows_units_bytes(json.loads(r.stdout)) == [rows * 64 * 4], r.stdout[-2000:]


def _units_inspect_cpu(nexus, tmp_path, k):
    """k student tensors each holding one re-encoded row of a [k, 64]
    teacher: (CPU user seconds of `nexus inspect`, its shared tensors)"""
    import json
    import resource
    import subprocess
    rng = np.random.default_rng(3)
    t = (rng.standard_normal((k, 64)) / 8).astype(np.float32)
    teacher = onnx_teacher(tmp_path / f"t{k}.onnx", {"layer.weight": t})
    student = onnx_teacher(tmp_path / f"s{k}.onnx", {
        f"s{i:06d}": np.stack([t[i] * np.float32(3) + np.float32(1),
                               rng.standard_normal(64).astype(np.float32)])
        for i in range(k)})
    best = None
    for _ in range(2):
        u0 = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
        r = subprocess.run([nexus, "inspect", str(student), "--teacher", str(teacher),
                            "--json"], capture_output=True, text=True)
        u = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime - u0
        best = u if best is None else min(best, u)
    assert r.returncode == 1, r.stderr[-2000:]
    return best, json.loads(r.stdout)["shared_tensors"]


def test_many_student_tensors_of_reencoded_rows_cost_linear_time(nexus, tmp_path):
    """Each student tensor's re-encoded teacher rows are merged with its
    own entries only: scanning every earlier student tensor's entries was
    quadratic (128,000 such tensors: 179 s; 24,000 took 34x the user time
    of 2,000, 12x more tensors)."""
    small, ms = _units_inspect_cpu(nexus, tmp_path, 2000)
    assert len(ms) == 2000 and {m.get("sum_total") for m in ms} == {2000 * 256}
    big, mb = _units_inspect_cpu(nexus, tmp_path, 24000)
    assert len(mb) == 24000 and {m.get("sum_total") for m in mb} == {24000 * 256}
    assert {m["bytes"] for m in mb} == {256}
    # the small run is a few tens of ms: floor it so that its noise cannot
    # fail the test (quadratic, 24,000 took about 2.5 s)
    assert big < 18 * max(small, 0.1), (small, big)
