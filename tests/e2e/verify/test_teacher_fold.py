"""The weights check (TRV-3): a teacher layer kept as a sum of live linear
maps - W = A + B (two MatMuls of one input, summed), or W' with a low-rank
term U V subtracted at run time - found by folding the graph's linear
algebra before fingerprinting (docs/TRV.md "Folded linear maps";
src/lib/fingerprint/fingerprint_fold.c).  Each student below computes
x @ T1 (red team 10's teacher layer, [64, 256]) from stored tensors none of
which is T1 or correlates with it; the graph is checked to compute it.
Honest sums (a residual, a LoRA-like term of noise) must pass."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import bundle_fixture as bf
from verify_helpers import codes, verify
from .test_redteam10 import D, H, T1_NAME, T2_NAME, teacher_pair
from .test_teacher_small import onnx_teacher

F = TensorProto.FLOAT


def _noise(shape, seed, scale=0.5):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def _mm(a, b, out):
    return helper.make_node("MatMul", [a, b], [out], name=out)


def _node(op, ins, out, **kw):
    return helper.make_node(op, ins, [out], name=out, **kw)


# Each form: t1 -> (tensors, nodes); the nodes read "x" ([batch, seq, 64],
# or "x2" = x as [-1, 64] for Gemm) and write "y" = x @ t1.
def f_a_minus_b(t1):
    a = _noise(t1.shape, 1)
    return {"fa": a, "fb": a - t1}, [_mm("x", "fa", "p"), _mm("x", "fb", "q"),
                                     _node("Sub", ["p", "q"], "y")]


def f_b_plus_a(t1):
    """the Add's operands in the other order"""
    a = _noise(t1.shape, 2)
    return {"fa": a, "fb": t1 - a}, [_mm("x", "fb", "q"), _mm("x", "fa", "p"),
                                     _node("Add", ["q", "p"], "y")]


def f_three_way(t1):
    a, b = _noise(t1.shape, 3), _noise(t1.shape, 4)
    return {"fa": a, "fb": b, "fc": t1 - a - b}, [
        _mm("x", "fa", "p"), _mm("x", "fb", "q"), _mm("x", "fc", "r"),
        _node("Add", ["p", "q"], "pq"), _node("Add", ["pq", "r"], "y")]


def f_sum_op(t1):
    """three terms in one Sum, one of them negated"""
    a, b = _noise(t1.shape, 5), _noise(t1.shape, 6)
    return {"fa": a, "fb": b, "fc": a + b - t1}, [
        _mm("x", "fa", "p"), _mm("x", "fb", "q"), _mm("x", "fc", "r"),
        _node("Neg", ["r"], "nr"), _node("Sum", ["p", "q", "nr"], "y")]


def _low_rank(t1, k, seed, scale):
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((D, k)).astype(np.float32)
    v = rng.standard_normal((k, H)).astype(np.float32)
    return {"fw": t1 + scale * u @ v, "fu": u, "fv": v}


def f_rank2(t1):
    return _low_rank(t1, 2, 7, 1.0), [
        _mm("x", "fu", "xu"), _mm("xu", "fv", "uv"), _mm("x", "fw", "p"),
        _node("Sub", ["p", "uv"], "y")]


def f_rank8_scaled(t1):
    """rank 8, the term scaled by a constant 4 between its two MatMuls"""
    s = _low_rank(t1, 8, 8, 4.0)
    s["four"] = np.float32(4.0).reshape(())
    return s, [_mm("x", "fu", "xu"), _node("Mul", ["xu", "four"], "xu4"),
               _mm("xu4", "fv", "uv"), _mm("x", "fw", "p"), _node("Sub", ["p", "uv"], "y")]


def f_left_operand(t1):
    """the weights the left operand: y^T = A^T x^T + B^T x^T"""
    a = _noise(t1.shape, 9)
    return ({"fa": a.T.copy(), "fb": (t1 - a).T.copy()},
            [_node("Transpose", ["x"], "xt", perm=[0, 2, 1]),
             _mm("fa", "xt", "p"), _mm("fb", "xt", "q"), _node("Add", ["p", "q"], "yt"),
             _node("Transpose", ["yt"], "y", perm=[0, 2, 1])])


def f_gemm(t1):
    """Gemm with transB: A^T, B^T stored [256, 64] (torch's Linear order)"""
    a = _noise(t1.shape, 10)
    return {"fa": a.T.copy(), "fb": (t1 - a).T.copy()}, [
        _node("Gemm", ["x2", "fa"], "p", transB=1), _node("Gemm", ["x2", "fb"], "q", transB=1),
        _node("Add", ["p", "q"], "y")]


def f_gemm_mixed(t1):
    """one term Gemm with transB (stored [256, 64]), the other MatMul [64, 256]"""
    a = _noise(t1.shape, 11)
    return {"fa": a.T.copy(), "fb": t1 - a}, [
        _node("Gemm", ["x2", "fa"], "p", transB=1), _mm("x2", "fb", "q"),
        _node("Add", ["p", "q"], "y")]


def _int8_cols(w, seed):
    """int8 codes, a scale per column (DequantizeLinear axis 1)"""
    scale = (np.abs(w).max(0) / 127).astype(np.float32)
    return np.clip(np.round(w / scale), -127, 127).astype(np.int8), scale


def f_int8_noise(t1):
    """A int8 (dequantized in the graph), B = T1 - dequant(A) float32"""
    q, s = _int8_cols(_noise(t1.shape, 12), 12)
    return {"fq": q, "fs": s, "fb": t1 - q.astype(np.float32) * s}, [
        _node("DequantizeLinear", ["fq", "fs"], "fa", axis=1), _mm("x", "fa", "p"),
        _mm("x", "fb", "q"), _node("Add", ["p", "q"], "y")]


def f_int8_both(t1):
    """both terms int8 with per-column scales: B = T1 - A quantized too
    (the sum is T1 to about 1% of its spread)"""
    a = _noise(t1.shape, 13, 0.125)
    qa, sa = _int8_cols(a, 13)
    qb, sb = _int8_cols(t1 - qa.astype(np.float32) * sa, 14)
    return {"fqa": qa, "fsa": sa, "fqb": qb, "fsb": sb}, [
        _node("DequantizeLinear", ["fqa", "fsa"], "fa", axis=1),
        _node("DequantizeLinear", ["fqb", "fsb"], "fb", axis=1),
        _mm("x", "fa", "p"), _mm("x", "fb", "q"), _node("Add", ["p", "q"], "y")]


def f_reshaped(t1):
    """A stored as [16, 1024], reshaped to [64, 256] in the graph"""
    a = _noise(t1.shape, 15)
    return {"fa": a.reshape(16, 1024).copy(), "fshape": np.int64([D, H]), "fb": t1 - a}, [
        _node("Reshape", ["fa", "fshape"], "fa2"), _mm("x", "fa2", "p"),
        _mm("x", "fb", "q"), _node("Add", ["p", "q"], "y")]


def f_float16_cast(t1):
    """A float16, Cast to float32 where it is used"""
    a = _noise(t1.shape, 16).astype(np.float16)
    return {"fa": a, "fb": t1 - a.astype(np.float32)}, [
        _node("Cast", ["fa"], "fa32", to=F), _mm("x", "fa32", "p"),
        _mm("x", "fb", "q"), _node("Add", ["p", "q"], "y")]


def f_identity_x(t1):
    """one term reads x through an Identity"""
    a = _noise(t1.shape, 17)
    return {"fa": a, "fb": t1 - a}, [
        _node("Identity", ["x"], "xi"), _mm("x", "fa", "p"), _mm("xi", "fb", "q"),
        _node("Add", ["p", "q"], "y")]


def _int8_reshaped(t1, seed, stored):
    """A = Reshape(DequantizeLinear(q, a scale per stored column)) to t1's
    shape; the scale indexed by the stored column, not the reshaped one"""
    a = _noise(t1.shape, seed).reshape(stored)
    a *= np.geomspace(0.05, 20, stored[1], dtype=np.float32)  # scales far apart
    q, s = _int8_cols(a, seed)
    return {"fq": q, "fs": s, "fshape": np.int64(t1.shape),
            "fb": t1 - (q.astype(np.float32) * s).reshape(t1.shape)}, [
        _node("DequantizeLinear", ["fq", "fs"], "fd", axis=1),
        _node("Reshape", ["fd", "fshape"], "fa"), _mm("x", "fa", "p"),
        _mm("x", "fb", "q"), _node("Add", ["p", "q"], "y")]


def f_int8_reshaped_wider(t1):
    """stored [16, 1024] (scale [1024]) viewed [64, 256]"""
    return _int8_reshaped(t1, 18, (16, 1024))


def f_int8_reshaped_narrower(t1):
    """stored [256, 64] (scale [64]) viewed [64, 256]: read past the scale"""
    return _int8_reshaped(t1, 19, (256, 64))


def _chain(name, out, n):
    return [_node("Identity", [name if i == 0 else f"{out}_i{i}"],
                  out if i == n - 1 else f"{out}_i{i + 1}") for i in range(n)]


def f_identity_chain_w(t1):
    """a weight through 40 Identities"""
    a = _noise(t1.shape, 25)
    return {"fa": a, "fb0": t1 - a}, _chain("fb0", "fb", 40) + [
        _mm("x", "fa", "p"), _mm("x", "fb", "q"), _node("Add", ["p", "q"], "y")]


def f_identity_chain_x(t1):
    """x through 40 Identities on one side"""
    a = _noise(t1.shape, 26)
    return {"fa": a, "fb": t1 - a}, _chain("x", "xi", 40) + [
        _mm("x", "fa", "p"), _mm("xi", "fb", "q"), _node("Add", ["p", "q"], "y")]


FORMS = {
    "x through an Identity on one side": (f_identity_x, 1e-4),
    "A - B": (f_a_minus_b, 1e-4),
    "B + A, operands swapped": (f_b_plus_a, 1e-4),
    "three-way split": (f_three_way, 1e-4),
    "Sum of three, one negated": (f_sum_op, 1e-4),
    "rank-2 term subtracted": (f_rank2, 1e-4),
    "rank-8 term, scaled, subtracted": (f_rank8_scaled, 1e-3),
    "weights as the left operand": (f_left_operand, 1e-4),
    "Gemm with transB": (f_gemm, 1e-4),
    "Gemm and MatMul mixed": (f_gemm_mixed, 1e-4),
    "int8 noise plus float32": (f_int8_noise, 1e-4),
    "int8 both terms": (f_int8_both, 2e-2),    # 0.9%
    "a term reshaped": (f_reshaped, 1e-4),
    "a float16 term cast": (f_float16_cast, 1e-2),
    "a weight through 40 Identities": (f_identity_chain_w, 1e-4),
    "x through 40 Identities": (f_identity_chain_x, 1e-4),
}

# what the graph computes, run node by node (numpy: no onnxruntime here)
OPS = {
    "MatMul": np.matmul, "Add": np.add, "Sub": np.subtract, "Mul": np.multiply,
    "Neg": np.negative, "Identity": lambda a: a, "Sum": lambda *a: sum(a), "Tanh": np.tanh,
    "Transpose": lambda a, perm=None: np.transpose(a, perm),
    "Reshape": lambda a, s: a.reshape(s),
    "Cast": lambda a, to=None: a.astype(np.float32),
    "Gemm": lambda a, b, transB=0: a @ (b.T if transB else b),
    "DequantizeLinear": lambda q, s, axis=1: q.astype(np.float32) * s,
}


def run_layer(tensors, nodes, x):
    env = {k: np.asarray(v) for k, v in tensors.items()}
    env["x"], env["x2"] = x, x.reshape(-1, D)
    for n in nodes:
        kw = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        env[n.output[0]] = OPS[n.op_type](*(env[i] for i in n.input), **kw)
    return env["y"]


def _computes(tensors, nodes, t1, tol):
    x = np.random.default_rng(3).standard_normal((2, 8, D)).astype(np.float32)
    got, want = run_layer(tensors, nodes, x).reshape(-1, H), x.reshape(-1, D) @ t1
    return float(np.abs(got - want).max() / np.abs(want).max()) < tol


def live_student(bundle, tensors, nodes, out="y"):
    """The fixture's student plus the layer: x ([batch, seq, 64]) made from
    the input ids, the layer's output reduced into a dead end (the fixture
    runs no selftest here; liveness is the signed tests' business)"""
    inits = [a if isinstance(a, TensorProto) else numpy_helper.from_array(np.asarray(a), n)
             for n, a in tensors.items()]
    inits += [numpy_helper.from_array(np.ones(D, np.float32), "fold_ones"),
              numpy_helper.from_array(np.int64([-1]), "fold_axes"),
              numpy_helper.from_array(np.int64([-1, D]), "fold_2d"),
              numpy_helper.from_array(np.zeros((), np.float32), "fold_zero")]
    pre = [_node("Cast", ["input_ids"], "fold_ids", to=F),
           _node("Unsqueeze", ["fold_ids", "fold_axes"], "fold_u"),
           _node("Mul", ["fold_u", "fold_ones"], "x"),
           _node("Reshape", ["x", "fold_2d"], "x2")]
    post = [_node("ReduceSum", [out], "fold_s", keepdims=0),
            _node("Mul", ["fold_s", "fold_zero"], "fold_z")]
    m = bf.student_model(extra_nodes=pre + nodes + post, extra_initializers=inits)
    bundle.meta["parameters"] = bf.human(bf.parameters(m))
    bundle.smuggle("model/student_model.onnx", m.SerializeToString())


def _caught(nexus, bundle, teacher):
    rc, rep = verify(nexus, bundle, "--teacher", teacher)
    fails = codes(rep, "FAIL")
    return rc == 1 and fails & {"teacher-tensor-copied", "teacher-values-copied"}, rep


@pytest.mark.parametrize("case", sorted(FORMS))
def test_teacher_layer_as_a_sum_of_linear_maps(nexus, bundle, tmp_path, case):
    form, tol = FORMS[case]
    t1, t2 = teacher_pair()
    tensors, nodes = form(t1)
    assert _computes(tensors, nodes, t1, tol)          # the copy is usable
    teacher = onnx_teacher(tmp_path / "t.onnx", {T1_NAME: t1, T2_NAME: t2})
    live_student(bundle, tensors, nodes)
    caught, rep = _caught(nexus, bundle, teacher)
    assert caught, [f["message"] for f in rep["findings"] if f["severity"] != "INFO"]
    # the finding names the folded map
    assert any("fold" in f["message"] and f["code"] in ("teacher-tensor-copied",
                                                        "teacher-values-copied")
               for f in rep["findings"]), [f["message"] for f in rep["findings"]]


# Honest sums: no teacher in them, whatever they fold to.
def h_residual(t1):
    """Add(MatMul(x, W), x): one linear term and the input (not a fold)"""
    return {"fw": _noise((D, D), 20)}, [_mm("x", "fw", "p"), _node("Add", ["p", "x"], "y")]


def h_lora(t1):
    """x W + (x U) V with noise everywhere (an unmerged LoRA adapter)"""
    rng = np.random.default_rng(21)
    return ({"fw": _noise((D, H), 22), "fu": rng.standard_normal((D, 8)).astype(np.float32),
             "fv": rng.standard_normal((8, H)).astype(np.float32) * 0.01},
            [_mm("x", "fu", "xu"), _mm("xu", "fv", "uv"), _mm("x", "fw", "p"),
             _node("Add", ["p", "uv"], "y")])


def h_split_noise(t1):
    """two noise MatMuls summed: a fold of noise"""
    return {"fa": _noise((D, H), 23), "fb": _noise((D, H), 24)}, [
        _mm("x", "fa", "p"), _mm("x", "fb", "q"), _node("Add", ["p", "q"], "y")]


HONEST = {"residual": h_residual, "LoRA-like term of noise": h_lora,
          "two noise terms": h_split_noise}


def assert_honest_passes(nexus, bundle, tmp_path, make):
    """the student make(t1) builds (tensors, nodes) is no teacher copy,
    and no weight check fails it closed either"""
    t1, t2 = teacher_pair()
    teacher = onnx_teacher(tmp_path / "t.onnx", {T1_NAME: t1, T2_NAME: t2})
    tensors, nodes = make(t1)
    live_student(bundle, tensors, nodes)
    rc, rep = verify(nexus, bundle, "--teacher", teacher)
    assert not codes(rep, "FAIL") & {"teacher-tensor-copied", "teacher-values-copied",
                                     "teacher-check-failed"}, \
        [f["message"] for f in rep["findings"] if f["severity"] != "INFO"]


@pytest.mark.parametrize("case", sorted(HONEST))
def test_honest_sums_pass(nexus, bundle, tmp_path, case):
    assert_honest_passes(nexus, bundle, tmp_path, HONEST[case])


def test_fold_budget_fails_closed(nexus, bundle, tmp_path):
    """Folds reading more than the model's own weight bytes (decoys: one
    noise pair summed again and again) fail the teacher check rather than
    leave the folds after them unread"""
    t1, t2 = teacher_pair()
    teacher = onnx_teacher(tmp_path / "t.onnx", {T1_NAME: t1, T2_NAME: t2})
    tensors = {"fa": _noise((D, H), 30), "fb": _noise((D, H), 31)}
    model_bytes = 4 * bf.parameters(bf.student_model()) + 2 * 4 * D * H
    n = model_bytes // (2 * 4 * D * H) + 2      # each fold reads fa and fb
    nodes = []
    for i in range(n):
        nodes += [_mm("x", "fa", f"p{i}"), _mm("x", "fb", f"q{i}"),
                  _node("Add", [f"p{i}", f"q{i}"], f"s{i}")]
    nodes.append(_node("Concat", [f"s{i}" for i in range(n)], "y", axis=-1))
    live_student(bundle, tensors, nodes)
    rc, rep = verify(nexus, bundle, "--teacher", teacher)
    assert rc == 1 and "teacher-check-failed" in codes(rep, "FAIL"), \
        [f["message"] for f in rep["findings"] if f["severity"] != "INFO"]
    assert any("to fold" in f["message"] for f in rep["findings"])


def test_low_rank_factor_over_the_cap_fails_closed(nexus, bundle, tmp_path):
    """W' = T + U V with V [64, 65537] (over the 4M elements a fold holds of
    its factors): the sum fails the teacher check, it is not left unfolded
    (T a 16 MiB teacher layer)"""
    n = 65537
    rng = np.random.default_rng(40)
    t = (rng.standard_normal((D, n)) / 8).astype(np.float32)
    u = rng.standard_normal((D, 64)).astype(np.float32)
    v = rng.standard_normal((64, n)).astype(np.float32)
    teacher = onnx_teacher(tmp_path / "t.onnx", {"big.dense": t})
    live_student(bundle, {"fw": t + u @ v, "fu": u, "fv": v},
                 [_mm("x", "fu", "xu"), _mm("xu", "fv", "uv"), _mm("x", "fw", "p"),
                  _node("Sub", ["p", "uv"], "y")])
    rc, rep = verify(nexus, bundle, "--teacher", teacher, timeout=300)
    fails = codes(rep, "FAIL")
    assert rc == 1 and fails & {"teacher-tensor-copied", "teacher-values-copied",
                                "teacher-check-failed"}, \
        [f["message"] for f in rep["findings"] if f["severity"] != "INFO"]


def test_fold_of_wide_rows_fails_closed(nexus, bundle, tmp_path):
    """A + B of [1, 2^22 + 1]: a row wider than a fold holds in memory (its
    block, 4 bytes a column, twice) fails the teacher check rather than
    take 8 bytes a column of memory (verify stays under 256 MiB)"""
    n = (1 << 22) + 1
    t1, t2 = teacher_pair()
    teacher = onnx_teacher(tmp_path / "t.onnx", {T1_NAME: t1, T2_NAME: t2})
    tensors = {"fa": _noise((1, n), 41), "fb": _noise((1, n), 42),
               "fcol": np.int64([-1, 1])}
    live_student(bundle, tensors, [_node("Reshape", ["x", "fcol"], "x1"), _mm("x1", "fa", "p"),
                                   _mm("x1", "fb", "q"), _node("Add", ["p", "q"], "y")])
    rc, rep = verify(nexus, bundle, "--teacher", teacher, timeout=300)
    assert rc == 1 and "teacher-check-failed" in codes(rep, "FAIL"), \
        [f["message"] for f in rep["findings"] if f["severity"] != "INFO"]
    assert any("to fold" in f["message"] for f in rep["findings"])


@pytest.mark.parametrize("form", [f_int8_reshaped_wider, f_int8_reshaped_narrower])
def test_int8_reshaped_folds_exactly(nexus, bundle, tmp_path, form):
    """Reshape(DequantizeLinear(q, per-axis scale)): the fold dequantizes
    each element by its stored column (indexed by the reshaped one, it read
    the wrong scales, or past the scale's end: a crash on a large one), so
    the folded map is the teacher layer whole"""
    t1, t2 = teacher_pair()
    tensors, nodes = form(t1)
    assert _computes(tensors, nodes, t1, 1e-4)
    teacher = onnx_teacher(tmp_path / "t.onnx", {T1_NAME: t1, T2_NAME: t2})
    live_student(bundle, tensors, nodes)
    rc, rep = verify(nexus, bundle, "--teacher", teacher)
    # found as a copy, or by the value sample: the fold's rounding leaves
    # over half of its values the teacher's or their twins (`bits ^ 1`)
    assert rc == 1 and any((f["code"] == "teacher-tensor-copied" and "(folded)' is '" in f["message"]
                            or f["code"] == "teacher-values-copied" and "(folded)' holds " in f["message"])
                           and T1_NAME in f["message"] for f in rep["findings"]), \
        [f["message"] for f in rep["findings"] if f["severity"] != "INFO"]
