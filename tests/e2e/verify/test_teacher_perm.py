"""Teacher layers moved within their vectors (issue #22, red team 11):
fingerprint_perm.c keys each vector on its sorted, standardised profile,
which a permutation inside the vector, a v + b and rounding leave alone.
Variants beyond red team 11's own (test_redteam11.py), and honest students
that must still pass (docs/TRV.md "Re-encoded vectors")."""
import numpy as np
import pytest

from verify_helpers import codes, verify
from .test_redteam10 import D, H, T1_NAME, T2_NAME, _rounded, _weights_caught, teacher_pair
from .test_redteam11 import P_HID, P_IN, P_OUT
from .test_teacher_small import onnx_teacher, put_student, safetensors_teacher
from .test_teacher_units import _fine_tuned, _sinusoidal


def _permuted(t1, t2):
    return t1[P_IN][:, P_HID], t2[P_HID][:, P_OUT]


def _int8_rows(v):
    """int8 codes with one scale per row (the scales kept aside)"""
    sc = np.abs(v).max(1, keepdims=True) / 127
    return np.round(v / sc).astype(np.int8), sc.astype(np.float32).ravel()


def _bf16(v):
    """bfloat16 bits (truncated float32), as ONNX stores them"""
    from onnx import TensorProto, helper
    bits = (v.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    return helper.make_tensor("x", TensorProto.BFLOAT16, v.shape, bits.tobytes(), raw=True)


def _named(name, t):
    t.name = name
    return t


def _signs(t1, t2):
    """hidden units' signs flipped (tanh is odd): T1's columns, T2's rows"""
    s = np.where(np.random.default_rng(8).random(H) < 0.5, -1, 1).astype(np.float32)
    return t1 * s, t2 * s[:, None]


def _fold4(t):
    """[a, b] kept as [b / 16, a, 4, 4]: its columns along axis 1 of four"""
    a, b = t.shape
    return _rounded(t).reshape(a, b // 16, 4, 4).transpose(1, 0, 2, 3).copy()


def _diag(w, lo, hi, seed):
    """diag(e) W diag(d), e and d log-uniform in [lo, hi]: free for a ReLU
    network (e into the embedding, d cancelled by the next layer)"""
    rng = np.random.default_rng(seed)
    e = np.exp(rng.uniform(np.log(lo), np.log(hi), w.shape[0]))[:, None]
    d = np.exp(rng.uniform(np.log(lo), np.log(hi), w.shape[1]))[None, :]
    return (w * e * d).astype(np.float32)


def _pad(w, k, seed, rows=1):
    """each row k elements longer (and `rows` rows more) of the student's own"""
    rng = np.random.default_rng(seed)
    out = (rng.standard_normal((w.shape[0] + rows, w.shape[1] + k)) * w.std()).astype(np.float32)
    out[:w.shape[0], :w.shape[1]] = w
    return out[:, rng.permutation(w.shape[1] + k)].copy()


CAUGHT = {
    "every axis permuted, int8 one scale per row": lambda w1, w2: {
        "w1_q": _int8_rows(w1)[0], "w1_s": _int8_rows(w1)[1],
        "w2_q": _int8_rows(w2)[0], "w2_s": _int8_rows(w2)[1]},
    "every axis permuted, bfloat16": lambda w1, w2: {
        "w1": _named("w1", _bf16(w1)), "w2": _named("w2", _bf16(w2))},
    "every axis permuted, signs of hidden units flipped, rounded": lambda w1, w2: {
        k: _rounded(v) for k, v in zip(("w1", "w2"), _signs(w1, w2))},
    "every axis permuted, transposed, float16": lambda w1, w2: {
        "w1": w1.T.astype(np.float16).copy(), "w2": w2.T.astype(np.float16).copy()},
    "every axis permuted, scaled and shifted, rounded": lambda w1, w2: {
        "w1": _rounded(w1 * -3.5 + 0.25), "w2": _rounded(w2 * 0.01 - 1)},
    "columns along axis 1 of a 4-D tensor, rounded": lambda w1, w2: {
        "w1": _fold4(w1), "w2": _fold4(w2)},
    "every axis permuted and scaled per element in [0.8, 1.25], rounded": lambda w1, w2: {
        "w1": _rounded(_diag(w1, 0.8, 1.25, 5)), "w2": _rounded(_diag(w2, 0.8, 1.25, 6))},
    "every axis permuted and scaled per element in [0.5, 2], float16": lambda w1, w2: {
        "w1": _diag(w1, 0.5, 2, 5).astype(np.float16), "w2": _diag(w2, 0.5, 2, 6).astype(np.float16)},
    "every axis permuted, scaled per element, transposed, rounded": lambda w1, w2: {
        "w1": _rounded(_diag(w1, 0.8, 1.25, 5).T.copy()),
        "w2": _rounded(_diag(w2, 0.8, 1.25, 6).T.copy())},
    "padded by one row and column, rounded": lambda w1, w2: {
        "w1": _rounded(_pad(w1, 1, 3)), "w2": _rounded(_pad(w2.T.copy(), 1, 4).T.copy())},
    "padded by four rows and columns, rounded": lambda w1, w2: {
        "w1": _rounded(_pad(w1, 4, 3, rows=4)), "w2": _rounded(_pad(w2.T.copy(), 4, 4, rows=4).T.copy())},
    "padded by two and scaled per element, rounded": lambda w1, w2: {
        "w1": _rounded(_pad(_diag(w1, 0.8, 1.25, 5), 2, 3)),
        "w2": _rounded(_pad(_diag(w2, 0.8, 1.25, 6).T.copy(), 2, 4).T.copy())},
}


@pytest.mark.parametrize("case", sorted(CAUGHT))
def test_teacher_layer_permuted_within_vectors_caught(nexus, bundle, tmp_path, case):
    t1, t2 = teacher_pair()
    teacher = onnx_teacher(tmp_path / "t.onnx", {T1_NAME: t1, T2_NAME: t2})
    w1, w2 = _permuted(t1, t2)
    if case.startswith("columns"):
        w1, w2 = t1, t2
    put_student(bundle, CAUGHT[case](w1, w2))
    assert _weights_caught(nexus, bundle, teacher)


def test_permuted_layer_of_a_safetensors_teacher(nexus, bundle, tmp_path):
    """the shape from the safetensors header: the pair permuted on every
    axis, float16"""
    t1, t2 = teacher_pair()
    teacher = safetensors_teacher(tmp_path / "t.safetensors", {T1_NAME: t1, T2_NAME: t2})
    w1, w2 = _permuted(t1, t2)
    put_student(bundle, {"w1": w1.astype(np.float16), "w2": w2.astype(np.float16)})
    assert _weights_caught(nexus, bundle, teacher)


def test_teacher_vectors_below_the_sum_pass(nexus, bundle, tmp_path):
    """8 teacher rows (8 KiB, under the 16 KiB sum), permuted within,
    among 24 rows of the student's own: not a finding"""
    t1, t2 = teacher_pair()
    teacher = onnx_teacher(tmp_path / "t.onnx", {T1_NAME: t1, T2_NAME: t2})
    rng = np.random.default_rng(12)
    own = (rng.standard_normal((24, H)) / 8).astype(np.float32)
    put_student(bundle, {"w": np.concatenate([_rounded(t1[:8][:, P_HID]), own])})
    rc, rep = verify(nexus, bundle, "--teacher", teacher)
    assert "teacher-tensor-copied" not in codes(rep), rep["findings"]


def _same_init(seed):
    """the teacher's init (seed 11) moved apart by training of half its size"""
    t1, t2 = teacher_pair()
    rng = np.random.default_rng(seed)
    return ((t1 + rng.standard_normal(t1.shape) / 16).astype(np.float32),
            (t2 + rng.standard_normal(t2.shape) / 16).astype(np.float32))


def _flipped(w, seed):
    """each row's and each column's sign flipped at random (diag(+-1) W diag(+-1))"""
    rng = np.random.default_rng(40 + seed)
    r = np.where(rng.random(w.shape[0]) < 0.5, -1, 1).astype(np.float32)
    c = np.where(rng.random(w.shape[1]) < 0.5, -1, 1).astype(np.float32)
    return (w * r[:, None] * c[None, :]).astype(np.float32)


def _short(w1, w2, n=15):
    """w1 cut by rows and w2 by columns into tensors of at most n vectors"""
    return {**{f"w1_{i}": w1[a:a + n].copy() for i, a in enumerate(range(0, w1.shape[0], n))},
            **{f"w2_{i}": w2[:, a:a + n].copy() for i, a in enumerate(range(0, w2.shape[1], n))}}


HONEST = {
    "random float32 of the teacher's shapes": lambda rng: {
        "w1": (rng.standard_normal((D, H)) / 8).astype(np.float32),
        "w2": (rng.standard_normal((H, D)) / 8).astype(np.float32)},
    "random heavy-tailed float32": lambda rng: {
        "w1": (rng.standard_t(4, (D, H)) / 8).astype(np.float32),
        "w2": (rng.laplace(size=(H, D)) / 8).astype(np.float32)},
    "random int8 and uint8": lambda rng: {
        "q1": rng.integers(-127, 128, (H, D)).astype(np.int8),
        "q2": rng.integers(0, 255, (D, H)).astype(np.uint8)},
    "random 3-D and 4-D": lambda rng: {
        "w3": (rng.standard_normal((16, D, 16)) / 8).astype(np.float32),
        "w4": (rng.standard_normal((4, H, 4, 4)) / 8).astype(np.float32)},
    "the same pair trained apart (another seed), float16": lambda rng: {
        k: v.astype(np.float16) for k, v in zip(("w1", "w2"), teacher_pair(99))},
    "from the teacher's init, trained apart": lambda rng: dict(zip(("w1", "w2"),
                                                                   _same_init(5))),
    "random heavy-tailed, vectors 1 to 4 longer than the teacher's": lambda rng: {
        "w1": (rng.standard_t(4, (D + 1, H + 1)) / 8).astype(np.float32),
        "w2": (rng.laplace(size=(H + 4, D + 3)) / 8).astype(np.float32)},
    "random, scaled per row and column in [0.5, 2]": lambda rng: {
        "w1": _diag((rng.standard_normal((D, H)) / 8).astype(np.float32), 0.5, 2, 1),
        "w2": _diag((rng.standard_t(4, (H, D)) / 8).astype(np.float32), 0.5, 2, 2)},
    "from the teacher's init, trained apart, scaled per row and column": lambda rng: {
        k: _diag(v, 0.8, 1.25, i) for i, (k, v) in enumerate(zip(("w1", "w2"), _same_init(5)))},
    "random heavy-tailed, signs flipped per row and column": lambda rng: {
        "w1": _flipped((rng.standard_t(4, (D, H)) / 8).astype(np.float32), 1),
        "w2": _flipped((rng.laplace(size=(H, D)) / 8).astype(np.float32), 2)},
    "from the teacher's init, trained apart, signs flipped per row and column": lambda rng: {
        k: _flipped(v, i) for i, (k, v) in enumerate(zip(("w1", "w2"), _same_init(5)))},
    "random, in tensors of 15 vectors and fewer": lambda rng: _short(
        (rng.standard_normal((D, H)) / 8).astype(np.float32),
        (rng.standard_t(4, (H, D)) / 8).astype(np.float32)),
    "from the teacher's init, trained apart, in tensors of 15 vectors, signs flipped":
        lambda rng: _short(*(_flipped(v, i) for i, v in enumerate(_same_init(5)))),
    "a longer sinusoidal table, fine-tuned": lambda rng: {
        "pos": _fine_tuned(_sinusoidal(320, 256))},
}


@pytest.mark.parametrize("student", sorted(HONEST))
def test_honest_students_pass(nexus, bundle, tmp_path, student):
    """No false alarm: tensors with the teacher's vector lengths (64, 256)
    along some axis, not derived from the teacher's layers; the teacher also
    holds a sinusoidal table (a formula's: not kept)"""
    t1, t2 = _same_init(6) if "init" in student else teacher_pair()
    teacher = onnx_teacher(tmp_path / "t.onnx", {
        T1_NAME: t1, T2_NAME: t2, "embeddings.position": _sinusoidal(256, 256)})
    put_student(bundle, HONEST[student](np.random.default_rng(10)))
    rc, rep = verify(nexus, bundle, "--teacher", teacher)
    assert "teacher-tensor-copied" not in codes(rep), rep["findings"]


def _log_uniform(n, seed, lo=0.8, hi=1.25):
    return np.exp(np.random.default_rng(seed).uniform(np.log(lo), np.log(hi), n)).astype(np.float32)


def test_scaled_permuted_pair_refused_at_signed_build(nexus, release_key, tmp_path):
    """Review A (stop 21): every axis permuted and each scaled by its own
    positive diagonal, x e^-1 . diag(e) W1 diag(d) . relu . diag(1/d) W2
    diag(f) . f^-1: one Mul more, the teacher's function; the official
    build signed it (128 KiB at +-25%)"""
    from onnx import TensorProto, helper, numpy_helper
    import workspace as ws
    from test_quantize import EMBED_RT
    from .test_redteam7 import signed_build_is_refused, teacher_onnx
    t1, t2 = teacher_pair()
    e, d, f = _log_uniform(D, 1), _log_uniform(H, 2), _log_uniform(D, 3)
    emb = np.random.default_rng(5).standard_normal((len(ws.VOCAB), D)).astype(np.float32)
    w1 = _rounded((e[:, None] * t1[P_IN][:, P_HID] * d[None, :]).astype(np.float32))
    w2 = _rounded(((t2[P_HID] / d[:, None])[:, P_OUT] * f[None, :]).astype(np.float32))
    tens = {"embeddings.weight": (emb[:, P_IN] / e).astype(np.float32), "dense1.weight": w1,
            "dense2.weight": w2, "outscale": (1 / f).astype(np.float32),
            "unpermute": np.argsort(P_OUT).astype(np.int64)}
    x = emb[:5]
    got = (np.maximum((x[:, P_IN] / e) @ w1, 0) @ w2 / f)[:, np.argsort(P_OUT)]
    want = np.maximum(x @ t1, 0) @ t2
    assert np.abs(got - want).max() / np.abs(want).max() < 1e-3
    mk = helper.make_node
    nodes = [mk("Gather", ["embeddings.weight", "input_ids"], ["x"]),
             mk("MatMul", ["x", "dense1.weight"], ["h1"]), mk("Relu", ["h1"], ["a1"]),
             mk("MatMul", ["a1", "dense2.weight"], ["o0"]), mk("Mul", ["o0", "outscale"], ["o"]),
             mk("Gather", ["o", "unpermute"], ["last_hidden_state"], axis=2)]
    g = helper.make_graph(
        nodes, "embedder",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "seq", D])],
        [numpy_helper.from_array(v, k) for k, v in tens.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    root = ws.make_workspace(tmp_path / "ws", student=m.SerializeToString(), runtime_yaml=EMBED_RT)
    teacher_onnx(root, {T1_NAME: t1, T2_NAME: t2})
    why = signed_build_is_refused(nexus, root, tmp_path / "bundle", release_key)
    assert "teacher" in why, why
