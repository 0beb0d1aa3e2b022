"""The weights check (TRV-3): a teacher layer kept as a sum of live linear
maps that the graph spells otherwise than test_teacher_fold.py's forms (the
review of stop 21): an Identity or a Cast between a term and its sum, a
Mul/Div of a term by a vector, [x, x] @ [A; B] with no sum at all, weights
stored 3-D, Unsqueeze'd, float64, in Constant nodes or typed fields, an
Einsum term, int8 codes through Cast and a Mul.  Each student computes
x @ T1 exactly (checked with numpy); the fold must find each
(docs/TRV.md "Folded linear maps").  Honest spellings of the same ops
(a scaled residual, attention's scalar Mul, a LoRA of noise) must pass."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import bundle_fixture as bf
from verify_helpers import codes, verify
from .test_redteam10 import D, H, T1_NAME, T2_NAME, teacher_pair
from .test_teacher_small import onnx_teacher
from .test_teacher_fold import _noise, _mm, _node, OPS as FOPS

F = TensorProto.FLOAT


def f16_int32_data(name, a):
    """float16 in int32_data (the canonical typed field for float16)"""
    t = TensorProto()
    t.name, t.data_type = name, TensorProto.FLOAT16
    t.dims.extend(a.shape)
    t.int32_data.extend(a.astype(np.float16).view(np.uint16).ravel().astype(np.int32).tolist())
    return t


def f32_float_data(name, a):
    t = TensorProto()
    t.name, t.data_type = name, TensorProto.FLOAT
    t.dims.extend(a.shape)
    t.float_data.extend(a.astype(np.float32).ravel().tolist())
    return t


def base(t1, seed):
    a = _noise(t1.shape, seed)
    return a, t1 - a


def _sum(a_out="p", b_out="q"):
    return _node("Add", [a_out, b_out], "y")


def f_identity_between(t1):
    a, b = base(t1, 40)
    return {"fa": a, "fb": b}, [_mm("x", "fa", "p"), _node("Identity", ["p"], "pi"),
                                _mm("x", "fb", "q"), _sum("pi", "q")]


def f_cast_x(t1):
    a, b = base(t1, 41)
    return {"fa": a, "fb": b}, [_node("Cast", ["x"], "xc", to=F), _mm("xc", "fa", "p"),
                                _mm("x", "fb", "q"), _sum()]


def f_cast_between(t1):
    a, b = base(t1, 60)
    return {"fa": a, "fb": b}, [_mm("x", "fa", "p"), _node("Cast", ["p"], "pc", to=F),
                                _mm("x", "fb", "q"), _sum("pc", "q")]


def f_3d_weight(t1):
    a, b = base(t1, 42)
    return {"fa": a.reshape(1, D, H).copy(), "fb": b}, [
        _mm("x", "fa", "p"), _mm("x", "fb", "q"), _sum()]


def f_unsqueeze_weight(t1):
    a, b = base(t1, 43)
    return {"fa": a, "fb": b, "fax": np.int64([0])}, [
        _node("Unsqueeze", ["fa", "fax"], "fa3"), _mm("x", "fa3", "p"), _mm("x", "fb", "q"),
        _sum()]


def f_squeeze_weight(t1):
    a, b = base(t1, 61)
    return {"fa": a.reshape(1, D, H).copy(), "fb": b, "fax": np.int64([0])}, [
        _node("Squeeze", ["fa", "fax"], "fa2"), _mm("x", "fa2", "p"), _mm("x", "fb", "q"),
        _sum()]


def f_flatten_weight(t1):
    a, b = base(t1, 62)
    return {"fa": a.reshape(D, 16, 16).copy(), "fb": b}, [
        _node("Flatten", ["fa"], "fa2", axis=1), _mm("x", "fa2", "p"), _mm("x", "fb", "q"),
        _sum()]


def f_expand_weight(t1):
    a, b = base(t1, 63)
    return {"fa": a, "fb": b, "fshape": np.int64([D, H])}, [
        _node("Expand", ["fa", "fshape"], "fa2"), _mm("x", "fa2", "p"), _mm("x", "fb", "q"),
        _sum()]


def f_float64(t1):
    a, b = base(t1, 44)
    return {"fa": a.astype(np.float64), "fb": b.astype(np.float64)}, [
        _node("Cast", ["fa"], "fa32", to=F), _node("Cast", ["fb"], "fb32", to=F),
        _mm("x", "fa32", "p"), _mm("x", "fb32", "q"), _sum()]


def f_mul_ones_vector(t1):
    a, b = base(t1, 45)
    return {"fa": a, "fb": b, "fones": np.ones(H, np.float32)}, [
        _mm("x", "fa", "p"), _mm("x", "fb", "q"), _node("Mul", ["q", "fones"], "q1"),
        _sum("p", "q1")]


def f_col_scale(t1):
    """B stored with its columns scaled, undone by a Mul by a vector"""
    a, b = base(t1, 46)
    d = np.random.default_rng(46).uniform(0.5, 2, H).astype(np.float32)
    return {"fa": a, "fb": (b / d).astype(np.float32), "fd": d}, [
        _mm("x", "fa", "p"), _mm("x", "fb", "q"), _node("Mul", ["q", "fd"], "q1"),
        _sum("p", "q1")]


def f_col_scale_div(t1):
    """B stored with its columns scaled, undone by a Div by a [1, H] vector"""
    a, b = base(t1, 64)
    d = np.random.default_rng(64).uniform(0.5, 2, (1, H)).astype(np.float32)
    return {"fa": a, "fb": (b * d).astype(np.float32), "fd": d}, [
        _mm("x", "fa", "p"), _mm("x", "fb", "q"), _node("Div", ["q", "fd"], "q1"),
        _sum("p", "q1")]


def f_col_scale_on_sum(t1):
    """both terms' columns scaled, undone by one Mul of the sum (vector first)"""
    d = np.random.default_rng(65).uniform(0.5, 2, H).astype(np.float32)
    a, b = base(t1, 65)
    return {"fa": (a / d).astype(np.float32), "fb": (b / d).astype(np.float32), "fd": d}, [
        _mm("x", "fa", "p"), _mm("x", "fb", "q"), _node("Add", ["p", "q"], "s"),
        _node("Mul", ["fd", "s"], "y")]


def f_row_scale_weight(t1):
    """B's rows scaled, undone by a Mul of the weight by a [D, 1] vector"""
    a, b = base(t1, 66)
    d = np.random.default_rng(66).uniform(0.5, 2, (D, 1)).astype(np.float32)
    return {"fa": a, "fb": (b / d).astype(np.float32), "fd": d}, [
        _node("Mul", ["fb", "fd"], "fb1"), _mm("x", "fa", "p"), _mm("x", "fb1", "q"), _sum()]


def f_concat_x(t1):
    """no sum at all: [x, x] @ [A; B]"""
    a, b = base(t1, 47)
    return {"fab": np.concatenate([a, b], 0)}, [
        _node("Concat", ["x", "x"], "xx", axis=-1), _mm("xx", "fab", "y")]


def f_concat_x3(t1):
    """[x, x, x] @ [A; B; C] through a Gemm-free MatMul, x 2-D"""
    a, b = _noise(t1.shape, 67), _noise(t1.shape, 68)
    return {"fabc": np.concatenate([a, b, t1 - a - b], 0)}, [
        _node("Concat", ["x", "x", "x"], "xx", axis=-1), _mm("xx", "fabc", "y")]


def f_einsum(t1):
    a, b = base(t1, 48)
    return {"fa": a, "fb": b}, [
        _node("Einsum", ["x", "fa"], "p", equation="bsi,ij->bsj"), _mm("x", "fb", "q"), _sum()]


def f_einsum_2d(t1):
    """ij,jk->ik on x as [-1, D], and the weight first (kj,ij->ik: B^T stored)"""
    a, b = base(t1, 69)
    return {"fa": a, "fbt": b.T.copy()}, [
        _node("Einsum", ["x2", "fa"], "p", equation="ij,jk->ik"),
        _node("Einsum", ["fbt", "x2"], "q", equation="kj, ij -> ik"), _sum()]


def f_einsum_ellipsis(t1):
    a, b = base(t1, 70)
    return {"fa": a, "fb": b}, [
        _node("Einsum", ["x", "fa"], "p", equation="...i,ij->...j"),
        _node("Einsum", ["x", "fb"], "q", equation="...i,ij"), _sum()]


def f_reshape_of_transpose(t1):
    a, b = base(t1, 49)
    return {"fat": a.T.copy(), "fb": b, "fshape": np.int64([D, H])}, [
        _node("Transpose", ["fat"], "fa1", perm=[1, 0]), _node("Reshape", ["fa1", "fshape"], "fa"),
        _mm("x", "fa", "p"), _mm("x", "fb", "q"), _sum()]


def f_f16_int32_data(t1):
    a = _noise(t1.shape, 50).astype(np.float16)
    return {"fa": f16_int32_data("fa", a), "fb": t1 - a.astype(np.float32)}, [
        _node("Cast", ["fa"], "fa32", to=F), _mm("x", "fa32", "p"), _mm("x", "fb", "q"), _sum()]


def f_float_data(t1):
    a, b = base(t1, 51)
    return {"fa": f32_float_data("fa", a), "fb": b}, [
        _mm("x", "fa", "p"), _mm("x", "fb", "q"), _sum()]


def f_constant_node(t1):
    a = _noise(t1.shape, 52).astype(np.float16)
    return {"fb": t1 - a.astype(np.float32)}, [
        helper.make_node("Constant", [], ["fa"], name="fa_c",
                         value=numpy_helper.from_array(a, "other_name")),
        _node("Cast", ["fa"], "fa32", to=F), _mm("x", "fa32", "p"), _mm("x", "fb", "q"), _sum()]


def f_int8_cast_mul(t1):
    """int8 codes Cast, scaled by a scalar after the MatMul (no DequantizeLinear)"""
    a = _noise(t1.shape, 53)
    s = np.float32(np.abs(a).max() / 127)
    q = np.clip(np.round(a / s), -127, 127).astype(np.int8)
    return {"fq": q, "fs": np.float32(s).reshape(()), "fb": t1 - q.astype(np.float32) * s}, [
        _node("Cast", ["fq"], "fq32", to=F), _mm("x", "fq32", "p0"),
        _node("Mul", ["p0", "fs"], "p"), _mm("x", "fb", "q"), _sum()]


def f_int8_cast_col_mul(t1):
    """int8 codes Cast, times a scale per column before the MatMul"""
    a = _noise(t1.shape, 71)
    s = (np.abs(a).max(0) / 127).astype(np.float32)
    q = np.clip(np.round(a / s), -127, 127).astype(np.int8)
    return {"fq": q, "fs": s, "fb": t1 - q.astype(np.float32) * s}, [
        _node("Cast", ["fq"], "fq32", to=F), _node("Mul", ["fq32", "fs"], "fa"),
        _mm("x", "fa", "p"), _mm("x", "fb", "q"), _sum()]


def f_lowrank_identity(t1):
    rng = np.random.default_rng(54)
    u = rng.standard_normal((D, 4)).astype(np.float32)
    v = rng.standard_normal((4, H)).astype(np.float32)
    return {"fw": t1 + u @ v, "fu": u, "fv": v}, [
        _mm("x", "fu", "xu"), _node("Identity", ["xu"], "xui"), _mm("xui", "fv", "uv"),
        _mm("x", "fw", "p"), _node("Sub", ["p", "uv"], "y")]


def f_constant_shape(t1):
    a, b = base(t1, 55)
    return {"fa": a.reshape(16, 1024).copy(), "fb": b}, [
        helper.make_node("Constant", [], ["fshape"], name="fshape_c",
                         value=numpy_helper.from_array(np.int64([D, H]), "fshape")),
        _node("Reshape", ["fa", "fshape"], "fa2"), _mm("x", "fa2", "p"), _mm("x", "fb", "q"),
        _sum()]


def f_identity_chain(t1):
    """17 Identity nodes on A"""
    a, b = base(t1, 56)
    nodes = [_node("Identity", ["fa" if i == 0 else f"fa_{i - 1}"], f"fa_{i}") for i in range(17)]
    return {"fa": a, "fb": b}, nodes + [_mm("x", "fa_16", "p"), _mm("x", "fb", "q"), _sum()]


def f_identity_chain_x(t1):
    """17 Identity nodes on x for one term"""
    a, b = base(t1, 57)
    nodes = [_node("Identity", ["x" if i == 0 else f"xi_{i - 1}"], f"xi_{i}") for i in range(17)]
    return {"fa": a, "fb": b}, nodes + [_mm("x", "fa", "p"), _mm("xi_16", "fb", "q"), _sum()]


def f_identity_chain_out(t1):
    """40 Identities between one term and the sum"""
    a, b = base(t1, 72)
    nodes = [_node("Identity", ["p" if i == 0 else f"pi_{i - 1}"], f"pi_{i}") for i in range(40)]
    return {"fa": a, "fb": b}, [_mm("x", "fa", "p")] + nodes + [_mm("x", "fb", "q"),
                                                               _sum("pi_39", "q")]


FORMS = {
    "Identity between MatMul and Add": f_identity_between,
    "Cast between MatMul and Add": f_cast_between,
    "40 Identities between MatMul and Add": f_identity_chain_out,
    "x through a Cast on one side": f_cast_x,
    "A stored 3-D [1, 64, 256]": f_3d_weight,
    "A Unsqueeze'd": f_unsqueeze_weight,
    "A Squeeze'd": f_squeeze_weight,
    "A Flatten'd": f_flatten_weight,
    "A Expand'ed to its own shape": f_expand_weight,
    "A and B float64, Cast": f_float64,
    "Mul by a ones vector": f_mul_ones_vector,
    "B's columns scaled, Mul by a vector": f_col_scale,
    "B's columns scaled, Div by a [1, H] vector": f_col_scale_div,
    "the sum's columns scaled, vector first": f_col_scale_on_sum,
    "B's rows scaled, the weight Mul'd by a [D, 1] vector": f_row_scale_weight,
    "[x, x] @ [A; B] (Concat of x)": f_concat_x,
    "[x, x, x] @ [A; B; C]": f_concat_x3,
    "Einsum term": f_einsum,
    "Einsum ij,jk->ik and weight first": f_einsum_2d,
    "Einsum with ellipsis, implicit output": f_einsum_ellipsis,
    "Reshape of a Transpose": f_reshape_of_transpose,
    "A float16 in int32_data, Cast": f_f16_int32_data,
    "A float32 in float_data": f_float_data,
    "A float16 in a Constant node, Cast": f_constant_node,
    "A int8 Cast then scalar Mul": f_int8_cast_mul,
    "A int8 Cast then a Mul per column": f_int8_cast_col_mul,
    "low-rank with Identity between": f_lowrank_identity,
    "Reshape by a Constant shape": f_constant_shape,
    "17 Identities on A": f_identity_chain,
    "17 Identities on x": f_identity_chain_x,
}


def _einsum(a, b, equation=None):
    eq = equation.decode() if isinstance(equation, bytes) else equation
    return np.einsum(eq.replace(" ", ""), a, b)


OPS = dict(FOPS)
OPS.update({
    "Einsum": _einsum,
    "Concat": lambda *a, axis=0: np.concatenate(a, axis),
    "Unsqueeze": lambda a, ax: np.expand_dims(a, tuple(int(i) for i in ax)),
    "Squeeze": lambda a, ax: np.squeeze(a, tuple(int(i) for i in ax)),
    "Flatten": lambda a, axis=1: a.reshape(int(np.prod(a.shape[:axis])), -1),
    "Expand": lambda a, s: a * np.ones(tuple(int(i) for i in s), a.dtype),
    "Cast": lambda a, to=None: np.asarray(a).astype(np.float32),
    "Reshape": lambda a, s: np.asarray(a).reshape(s),
    "Div": np.divide,
})


def _arr(v):
    if isinstance(v, TensorProto):
        return numpy_helper.to_array(v)
    return np.asarray(v)


def computes(tensors, nodes, t1):
    """max |y - x T1| / max |x T1| of the layer run node by node"""
    env = {k: _arr(v) for k, v in tensors.items()}
    x = np.random.default_rng(3).standard_normal((2, 8, D)).astype(np.float32)
    env["x"], env["x2"] = x, x.reshape(-1, D)
    for n in nodes:
        kw = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type == "Constant":
            env[n.output[0]] = numpy_helper.to_array(kw["value"])
            continue
        env[n.output[0]] = OPS[n.op_type](*(env[i] for i in n.input), **kw)
    got, want = env["y"].reshape(-1, H), x.reshape(-1, D) @ t1
    return float(np.abs(got - want).max() / np.abs(want).max())


def live_student(bundle, tensors, nodes):
    inits = [v if isinstance(v, TensorProto) else numpy_helper.from_array(np.asarray(v), n)
             for n, v in tensors.items()]
    inits += [numpy_helper.from_array(np.ones(D, np.float32), "fold_ones"),
              numpy_helper.from_array(np.int64([-1]), "fold_axes"),
              numpy_helper.from_array(np.int64([-1, D]), "fold_2d"),
              numpy_helper.from_array(np.zeros((), np.float32), "fold_zero")]
    pre = [_node("Cast", ["input_ids"], "fold_ids", to=F),
           _node("Unsqueeze", ["fold_ids", "fold_axes"], "fold_u"),
           _node("Mul", ["fold_u", "fold_ones"], "x"),
           _node("Reshape", ["x", "fold_2d"], "x2")]
    post = [_node("ReduceSum", ["y"], "fold_s", keepdims=0),
            _node("Mul", ["fold_s", "fold_zero"], "fold_z")]
    m = bf.student_model(extra_nodes=pre + nodes + post, extra_initializers=inits)
    bundle.meta["parameters"] = bf.human(bf.parameters(m))
    bundle.smuggle("model/student_model.onnx", m.SerializeToString())


@pytest.mark.parametrize("case", sorted(FORMS))
def test_teacher_layer_summed_otherwise(nexus, bundle, tmp_path, case):
    t1, t2 = teacher_pair()
    tensors, nodes = FORMS[case](t1)
    err = computes(tensors, nodes, t1)
    assert err < 1e-2, err                      # the copy is usable
    teacher = onnx_teacher(tmp_path / "t.onnx", {T1_NAME: t1, T2_NAME: t2})
    live_student(bundle, tensors, nodes)
    rc, rep = verify(nexus, bundle, "--teacher", teacher)
    fails = codes(rep, "FAIL")
    assert rc == 1 and fails & {"teacher-tensor-copied", "teacher-values-copied"}, \
        [f["message"] for f in rep["findings"] if f["severity"] != "INFO"]
    assert any("fold" in f["message"] and f["code"] in ("teacher-tensor-copied",
                                                        "teacher-values-copied")
               for f in rep["findings"]), [f["message"] for f in rep["findings"]]


# Honest spellings of the same ops: nothing of the teacher in them.
def h_scaled_residual(t1):
    """x + Mul(MatMul(x, W), gamma): one term and the input"""
    return {"fw": _noise((D, D), 80), "fg": np.full(D, 0.1, np.float32)}, [
        _mm("x", "fw", "p"), _node("Mul", ["p", "fg"], "pg"), _node("Add", ["x", "pg"], "y")]


def h_attention_scale(t1):
    """q k^T times a scalar, plus a mask: no weight a term of x"""
    return {"fq": _noise((D, D), 81), "fk": _noise((D, D), 82),
            "fsc": np.float32(0.125).reshape(()), "fmask": np.zeros((8, 8), np.float32)}, [
        _mm("x", "fq", "q"), _mm("x", "fk", "k"), _node("Transpose", ["k"], "kt", perm=[0, 2, 1]),
        _mm("q", "kt", "s"), _node("Mul", ["s", "fsc"], "s1"), _node("Add", ["s1", "fmask"], "y")]


def h_lora_scaled(t1):
    """x W + ((x U) V) * alpha/r with noise everywhere, W Cast from float16"""
    rng = np.random.default_rng(83)
    return ({"fw": _noise((D, H), 84).astype(np.float16),
             "fu": rng.standard_normal((D, 8)).astype(np.float32),
             "fv": rng.standard_normal((8, H)).astype(np.float32) * 0.01,
             "fal": np.float32(2.0).reshape(())},
            [_node("Cast", ["fw"], "fw32", to=F), _mm("x", "fu", "xu"), _mm("xu", "fv", "uv"),
             _node("Mul", ["uv", "fal"], "uva"), _mm("x", "fw32", "p"),
             _node("Add", ["p", "uva"], "y")])


def h_concat_noise(t1):
    """[x, x] @ W of noise: folds to noise"""
    return {"fw": _noise((2 * D, H), 85)}, [
        _node("Concat", ["x", "x"], "xx", axis=-1), _mm("xx", "fw", "y")]


HONEST = {"scaled residual": h_scaled_residual, "attention's scalar Mul": h_attention_scale,
          "LoRA scaled, W float16": h_lora_scaled, "[x, x] @ noise": h_concat_noise}


@pytest.mark.parametrize("case", sorted(HONEST))
def test_honest_spellings_pass(nexus, bundle, tmp_path, case):
    from .test_teacher_fold import assert_honest_passes
    assert_honest_passes(nexus, bundle, tmp_path, HONEST[case])


def test_scales_past_their_memory_fail_closed(nexus, bundle, tmp_path):
    """A term under two vector Muls of 2^21 + 1 elements each (more than
    the 4M scale elements a sum's walk holds at once): the teacher check
    fails closed, it does not hold them all nor skip the sum"""
    t1, t2 = teacher_pair()
    teacher = onnx_teacher(tmp_path / "t.onnx", {T1_NAME: t1, T2_NAME: t2})
    n = (1 << 21) + 1
    a, b = base(t1, 90)
    tensors = {"fa": a, "fb": b, "fv1": np.ones(n, np.float32), "fv2": np.ones(n, np.float32)}
    nodes = [_mm("x", "fa", "p"), _node("Mul", ["p", "fv1"], "p1"), _node("Mul", ["p1", "fv2"], "p2"),
             _mm("x", "fb", "q"), _sum("p2", "q")]
    live_student(bundle, tensors, nodes)
    rc, rep = verify(nexus, bundle, "--teacher", teacher, timeout=300)
    assert rc == 1 and "teacher-check-failed" in codes(rep, "FAIL"), \
        [f["message"] for f in rep["findings"] if f["severity"] != "INFO"]
    assert any("scale elements" in f["message"] for f in rep["findings"])


# The insider's path (the review signed three of these): official build
# with --key, then the gate.  dense2 is split too (A + B, an Identity
# between), so that it is not found stored.
def _signed_model(kind, t1, t2):
    import workspace as ws
    rng = np.random.default_rng(5)
    emb = rng.standard_normal((len(ws.VOCAB), D)).astype(np.float32)
    a = (rng.standard_normal(t1.shape) * 0.5).astype(np.float32)
    b = (rng.standard_normal(t2.shape) * 0.5).astype(np.float32)
    tens = {"embeddings.weight": emb, "d2a": b, "d2b": t2 - b}
    nodes = [_node("Gather", ["embeddings.weight", "input_ids"], "x")]
    if kind == "Identity between MatMul and Add":
        tens.update({"d1a": a, "d1b": t1 - a})
        nodes += [_mm("x", "d1a", "p"), _node("Identity", ["p"], "pi"),
                  _mm("x", "d1b", "q"), _node("Add", ["pi", "q"], "h1")]
    elif kind == "Mul by a vector":
        d = rng.uniform(0.5, 2, H).astype(np.float32)
        tens.update({"d1a": a, "d1b": ((t1 - a) / d).astype(np.float32), "d1d": d})
        nodes += [_mm("x", "d1a", "p"), _mm("x", "d1b", "q0"),
                  _node("Mul", ["q0", "d1d"], "q"), _node("Add", ["p", "q"], "h1")]
    else:
        tens.update({"d1ab": np.concatenate([a, t1 - a], 0)})
        nodes += [_node("Concat", ["x", "x"], "xx", axis=-1), _mm("xx", "d1ab", "h1")]
    nodes += [_node("Tanh", ["h1"], "a1"), _mm("a1", "d2a", "r"), _node("Identity", ["r"], "ri"),
              _mm("a1", "d2b", "s"), _node("Add", ["ri", "s"], "last_hidden_state")]
    g = helper.make_graph(
        nodes, "embedder",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("last_hidden_state", F, ["batch", "seq", D])],
        [numpy_helper.from_array(v, k) for k, v in tens.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    return m.SerializeToString()


@pytest.mark.parametrize("kind", ["Identity between MatMul and Add", "Mul by a vector",
                                  "[x, x] @ [A; B]"])
def test_signed_build_refuses_the_spellings(nexus, release_key, tmp_path, kind):
    import workspace as ws
    from test_quantize import EMBED_RT
    from .test_redteam7 import signed_build_is_refused, teacher_onnx
    t1, t2 = teacher_pair()
    root = ws.make_workspace(tmp_path / "ws", student=_signed_model(kind, t1, t2),
                             runtime_yaml=EMBED_RT)
    teacher_onnx(root, {T1_NAME: t1, T2_NAME: t2})
    why = signed_build_is_refused(nexus, root, tmp_path / "bundle", release_key)
    assert "teacher" in why, why


# Review A of stop 22: a scale stored as external data, and an Einsum
# equation padded past 64 bytes, each made the fold skip the sum.
def _external(name, a, location="student_model.onnx.data", offset=0):
    """initializer name whose bytes are in the bundle's external data file"""
    t = numpy_helper.from_array(np.asarray(a), name)
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", str(offset)), ("length", str(a.nbytes))):
        e = t.external_data.add()
        e.key, e.value = k, v
    return t


def x_col_scale_external(t1):
    """x A + (x B/d) * d, d in external data"""
    a, b = base(t1, 91)
    d = np.random.default_rng(91).uniform(0.5, 2, H).astype(np.float32)
    return {"fa": a, "fb": (b / d).astype(np.float32), "fd": _external("fd", d)}, [
        _mm("x", "fa", "p"), _mm("x", "fb", "q"), _node("Div", ["q", "fd"], "q0"),
        _node("Mul", ["q0", "fd"], "q1"), _node("Mul", ["q1", "fd"], "q2"), _sum("p", "q2")], d


def x_dq_scale_external(t1):
    """A int8 dequantized by a per-column scale in external data"""
    from .test_teacher_fold import _int8_cols
    q, s = _int8_cols(_noise(t1.shape, 92), 92)
    return {"fq": q, "fs": _external("fs", s), "fb": t1 - q.astype(np.float32) * s}, [
        _node("DequantizeLinear", ["fq", "fs"], "fa", axis=1), _mm("x", "fa", "p"),
        _mm("x", "fb", "q"), _sum()], s


EXTERNAL = {"Mul/Div scale in external data": x_col_scale_external,
            "DequantizeLinear scale in external data": x_dq_scale_external}


@pytest.mark.parametrize("case", sorted(EXTERNAL))
def test_external_scale_is_read(nexus, bundle, tmp_path, case):
    t1, t2 = teacher_pair()
    tensors, nodes, data = EXTERNAL[case](t1)
    env = {k: (data if isinstance(v, TensorProto) else v) for k, v in tensors.items()}
    OPS.setdefault("DequantizeLinear", FOPS["DequantizeLinear"])
    assert computes(env, nodes, t1) < 1e-2
    teacher = onnx_teacher(tmp_path / "t.onnx", {T1_NAME: t1, T2_NAME: t2})
    bundle.write("model/student_model.onnx.data", data.tobytes())
    live_student(bundle, tensors, nodes)
    rc, rep = verify(nexus, bundle, "--teacher", teacher)
    assert rc == 1 and codes(rep, "FAIL") & {"teacher-tensor-copied", "teacher-values-copied"}, \
        [f["message"] for f in rep["findings"] if f["severity"] != "INFO"]


@pytest.mark.parametrize("pad", [60, 300, 5000])
def test_einsum_long_equation(nexus, bundle, tmp_path, pad):
    """the Einsum term's equation padded with spaces past 64 bytes (the
    runtime strips them)"""
    t1, t2 = teacher_pair()
    a, b = base(t1, 93)
    eq = "bsi,ij->bsj".replace(",", " " * pad + ",")
    tensors, nodes = {"fa": a, "fb": b}, [
        _node("Einsum", ["x", "fa"], "p", equation=eq), _node("Einsum", ["x", "fb"], "q", equation=eq),
        _sum()]
    assert computes(tensors, nodes, t1) < 1e-2
    teacher = onnx_teacher(tmp_path / "t.onnx", {T1_NAME: t1, T2_NAME: t2})
    live_student(bundle, tensors, nodes)
    rc, rep = verify(nexus, bundle, "--teacher", teacher)
    # past the 4096 bytes read, the fold fails closed
    want = {"teacher-tensor-copied", "teacher-values-copied"} | \
        ({"teacher-check-failed"} if pad > 1000 else set())
    assert rc == 1 and codes(rep, "FAIL") & want, \
        [f["message"] for f in rep["findings"] if f["severity"] != "INFO"]


def test_dequantize_scales_charged(nexus, bundle, tmp_path):
    """five MatMuls of one DequantizeLinear weight [1, 2^19] (a scale and a
    zero point per column) summed: each term's copy of the scale and zero
    point counts against the 4M scale elements a walk holds (review A: 557
    MB at 16 terms of 2^22), so the check fails closed past them"""
    t1, t2 = teacher_pair()
    teacher = onnx_teacher(tmp_path / "t.onnx", {T1_NAME: t1, T2_NAME: t2})
    m = 1 << 19
    rng = np.random.default_rng(94)
    tensors = {"fq": rng.integers(-127, 127, (1, m)).astype(np.int8),
               "fs": rng.uniform(0.01, 0.02, m).astype(np.float32), "fz": np.zeros(m, np.int8),
               "fcol": np.int64([-1, 1])}
    nodes = [_node("DequantizeLinear", ["fq", "fs", "fz"], "fw", axis=1),
             _node("Reshape", ["x", "fcol"], "xc")] + \
        [_mm("xc", "fw", f"p{i}") for i in range(5)] + [_node("Sum", [f"p{i}" for i in range(5)], "y")]
    live_student(bundle, tensors, nodes)
    rc, rep = verify(nexus, bundle, "--teacher", teacher, timeout=300)
    assert rc == 1 and "teacher-check-failed" in codes(rep, "FAIL"), \
        [f["message"] for f in rep["findings"] if f["severity"] != "INFO"]
    assert any("scale elements" in f["message"] for f in rep["findings"])


def test_one_code_tensor_two_scales(nexus, bundle, tmp_path):
    """int8 codes q of noise dequantized twice, by per-column scales s1 and
    s2, plus C = T1 - q (s1 + s2): the fold took the two DequantizeLinears
    of one tensor for one weight reached twice (2 q s1 + C, no T1; review
    A of stop 22)"""
    from .test_teacher_fold import _int8_cols
    t1, t2 = teacher_pair()
    q, s = _int8_cols(_noise(t1.shape, 95), 95)
    s2 = (s * np.random.default_rng(95).uniform(2, 4, s.shape)).astype(np.float32)
    tensors = {"fq": q, "fs1": s, "fs2": s2,
               "fc": (t1 - q.astype(np.float32) * (s + s2)).astype(np.float32)}
    nodes = [_node("DequantizeLinear", ["fq", "fs1"], "fa", axis=1),
             _node("DequantizeLinear", ["fq", "fs2"], "fb", axis=1),
             _mm("x", "fa", "p"), _mm("x", "fb", "q"), _mm("x", "fc", "r"),
             _node("Sum", ["p", "q", "r"], "y")]
    OPS.setdefault("DequantizeLinear", FOPS["DequantizeLinear"])
    OPS.setdefault("Sum", lambda *a: sum(a))
    assert computes(tensors, nodes, t1) < 1e-2
    teacher = onnx_teacher(tmp_path / "t.onnx", {T1_NAME: t1, T2_NAME: t2})
    live_student(bundle, tensors, nodes)
    rc, rep = verify(nexus, bundle, "--teacher", teacher)
    # q is read once per term: 3 terms of 64 KiB read are over this small
    # model's 88 KB of weights, so the check may fail closed instead
    assert rc == 1 and codes(rep, "FAIL") & {"teacher-tensor-copied", "teacher-values-copied",
                                             "teacher-check-failed"}, \
        [f["message"] for f in rep["findings"] if f["severity"] != "INFO"]
