"""Red team 10 (issue #22): attacks on what stop 19 added - the correlation
of same-size tensors (fingerprint_corr.c), the 16-bit canonical forms, the
Python audit's self/cls binding (pyaudit_bind.c) and the vocabulary bound.
An insider controls only the workspace and runs the official
`nexus build --key`; the gate is

    nexus verify --strict --require-signature --pubkey RELEASE.pub
                 --teacher artifacts/teacher.onnx --teacher checkpoints/teacher.pt

Cases the gate catches guard against regressions; cases that get through
are strict xfails naming their class and the fix wanted (docs/TRV.md).
"""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import workspace as ws
from .test_redteam7 import signed_build_is_refused, teacher_onnx

# --------------------------------------- a teacher layer pair, re-encoded
# The teacher's feed-forward pair: tanh(x @ T1) @ T2, T1 [64, 256] and T2
# [256, 64] (64 KiB each, in the [in, out] order torch.onnx.export writes).
# Each form below is a student that computes the same function (exactly,
# or to float rounding / 16 mantissa bits) from tensors that are not T1
# and T2 at the same positions - the correlation of same-size tensors
# compares element i with element i (as is, reversed, transposed) only.
D, H = 64, 256
T1_NAME, T2_NAME = "encoder.layer.3.intermediate.dense", "encoder.layer.3.output.dense"


def teacher_pair(seed=11):
    rng = np.random.default_rng(seed)
    return ((rng.standard_normal((D, H)) / 8).astype(np.float32),
            (rng.standard_normal((H, D)) / 8).astype(np.float32))


def _rounded(t, bits=16):
    """the mantissa cut to `bits` bits: 5 significant digits, a usable copy"""
    return (t.view(np.uint32) & np.uint32(~((1 << (23 - bits)) - 1) & 0xFFFFFFFF)).view(np.float32)


def _perm():
    return np.random.default_rng(77).permutation(H)


def _signs():
    return np.where(np.random.default_rng(78).random(H) < 0.5, -1, 1).astype(np.float32)


# Each form: (t1, t2) -> (tensors, fn); fn(x, tensors) is what the student's
# graph computes, and the test checks it is the teacher's function.
def f_plain(x, s):
    return np.tanh(x @ s["w1"]) @ s["w2"]


def form_same(t1, t2):
    return {"w1": t1, "w2": t2}, f_plain


def form_rounded(t1, t2):
    return {"w1": _rounded(t1), "w2": _rounded(t2)}, f_plain


def form_permuted(t1, t2):
    """hidden units permuted: T1's columns and T2's rows by one permutation
    (tanh acts element by element, so the network is the same function)"""
    p = _perm()
    return {"w1": t1[:, p], "w2": t2[p]}, f_plain


def form_permuted_rounded(t1, t2):
    s, f = form_permuted(t1, t2)
    return {k: _rounded(v) for k, v in s.items()}, f


def form_permuted_signed(t1, t2):
    """permuted, and each hidden unit's sign flipped at random (tanh is odd:
    flip T1's column and T2's row together)"""
    p, sg = _perm(), _signs()
    return {"w1": (t1 * sg)[:, p], "w2": (t2 * sg[:, None])[p]}, f_plain


def form_permuted_signed_rounded(t1, t2):
    s, f = form_permuted_signed(t1, t2)
    return {k: _rounded(v) for k, v in s.items()}, f


def form_signed_rounded(t1, t2):
    """each hidden unit's sign flipped at random, in place, rounded"""
    sg = _signs()
    return {"w1": _rounded(t1 * sg), "w2": _rounded(t2 * sg[:, None])}, f_plain


def form_split(t1, t2):
    """W = A + B, A noise four times the weights' spread; the graph computes
    x @ A + x @ B (two live MatMuls: no node computes from constants only)"""
    rng = np.random.default_rng(80)
    a1 = (rng.standard_normal(t1.shape) / 2).astype(np.float32)
    a2 = (rng.standard_normal(t2.shape) / 2).astype(np.float32)
    return ({"w1a": a1, "w1b": t1 - a1, "w2a": a2, "w2b": t2 - a2},
            lambda x, s: (np.tanh(x @ s["w1a"] + x @ s["w1b"]) @ s["w2a"]
                          + np.tanh(x @ s["w1a"] + x @ s["w1b"]) @ s["w2b"]))


def form_low_rank(t1, t2):
    """W + 4 u v^T stored; the graph subtracts (x @ u) v^T"""
    rng = np.random.default_rng(81)
    u1, v1 = rng.standard_normal((D, 1)).astype(np.float32), rng.standard_normal((1, H)).astype(np.float32)
    u2, v2 = rng.standard_normal((H, 1)).astype(np.float32), rng.standard_normal((1, D)).astype(np.float32)
    return ({"w1": t1 + 4 * u1 @ v1, "u1": u1, "v1": v1,
             "w2": t2 + 4 * u2 @ v2, "u2": u2, "v2": v2},
            lambda x, s: ((lambda h: h @ s["w2"] - 4 * (h @ s["u2"]) @ s["v2"])(
                np.tanh(x @ s["w1"] - 4 * (x @ s["u1"]) @ s["v1"]))))


def _col_scales(n, seed):
    rng = np.random.default_rng(seed)
    return (10.0 ** rng.uniform(-2, 2, n) * np.where(rng.random(n) < 0.5, -1, 1)).astype(np.float32)


def form_column_scaled(t1, t2):
    """each output column scaled by its own factor (1e-2 .. 1e2, either
    sign); the graph divides the MatMul's output by the factors"""
    c1, c2 = _col_scales(H, 82), _col_scales(D, 83)
    return ({"w1": t1 * c1, "c1": c1, "w2": t2 * c2, "c2": c2},
            lambda x, s: (np.tanh((x @ s["w1"]) / s["c1"]) @ s["w2"]) / s["c2"])


def form_padded_rounded(t1, t2):
    """one hidden unit more (a column of T1, a row of T2, both noise): every
    element count changes, and the values are rounded"""
    rng = np.random.default_rng(84)
    w1 = np.concatenate([t1, rng.standard_normal((D, 1)).astype(np.float32) / 8], 1)
    w2 = np.concatenate([t2, np.zeros((1, D), np.float32)], 0)
    return {"w1": _rounded(w1), "w2": _rounded(w2)}, f_plain


def form_axes_swapped_rounded(t1, t2):
    """[256, 64] kept as [64, 4, 64] (axes 0 and 1 of its [4, 64, 64] view
    swapped), rounded; the graph's Transpose+Reshape of one weight is one of
    the folds constant-subgraph lets through"""
    w1 = _rounded(t1).reshape(D, 4, 64).transpose(1, 0, 2).copy()
    w2 = _rounded(t2).reshape(4, 64, 64).transpose(1, 0, 2).copy()
    return ({"w1": w1, "w2": w2},
            lambda x, s: np.tanh(x @ s["w1"].transpose(1, 0, 2).reshape(D, H))
            @ s["w2"].transpose(1, 0, 2).reshape(H, D))


def _uint8_rows(t, seed):
    """uint8 codes, per-row scale and zero point (a row spans 20..60 codes,
    its zero point anywhere the codes fit)"""
    rng = np.random.default_rng(seed)
    lo, hi = t.min(1, keepdims=True), t.max(1, keepdims=True)
    span = rng.uniform(20, 60, (t.shape[0], 1))
    scale = ((hi - lo) / span).astype(np.float32)
    zp = np.round(rng.uniform(0, 255 - span) - lo / scale).astype(np.float32)
    q = np.clip(np.round(t / scale) + zp, 0, 255).astype(np.uint8)
    return q, scale, zp


def form_uint8_row_zero_points(t1, t2):
    q1, s1, z1 = _uint8_rows(t1.T.copy(), 85)     # per output column of T1
    q2, s2, z2 = _uint8_rows(t2.T.copy(), 86)
    return ({"q1": q1, "s1": s1, "z1": z1, "q2": q2, "s2": s2, "z2": z2},
            lambda x, s: np.tanh(x @ ((s["q1"] - s["z1"]) * s["s1"]).T)
            @ ((s["q2"] - s["z2"]) * s["s2"]).T)


def form_plus_constant(t1, t2):
    """a constant 7 added to every weight (the graph subtracts x.sum * 7)"""
    return ({"w1": t1 + 7, "w2": t2 + 7},
            lambda x, s: (lambda h: h @ s["w2"] - 7 * h.sum(-1, keepdims=True))(
                np.tanh(x @ s["w1"] - 7 * x.sum(-1, keepdims=True))))


def _pow2_cols(n, seed):
    rng = np.random.default_rng(seed)
    return (2.0 ** rng.integers(-3, 4, n)).astype(np.float32)


def form_pow2_columns(t1, t2):
    """each output column scaled by its own power of two (2^-3 .. 2^3):
    lossless, undone exactly by one Mul of the MatMul's output"""
    c1, c2 = _pow2_cols(H, 87), _pow2_cols(D, 88)
    return ({"w1": t1 * c1, "c1": 1 / c1, "w2": t2 * c2, "c2": 1 / c2},
            lambda x, s: (np.tanh((x @ s["w1"]) * s["c1"]) @ s["w2"]) * s["c2"])


def form_fp16_pow2_columns(t1, t2):
    """the same in float16 (the exporter's half cast, then the scales)"""
    s, f = form_pow2_columns(t1, t2)
    return {k: (v.astype(np.float16) if k.startswith("w") else v) for k, v in s.items()}, f


def _f16_toward_zero(t):
    """float16 rounded toward zero (not to nearest even, as torch casts):
    about half the elements one unit in the last place off the cast"""
    h = t.astype(np.float16)
    over = np.abs(h.astype(np.float32)) > np.abs(t)
    return np.where(over, np.nextafter(h, np.float16(0)), h).astype(np.float16)


def form_fp16_toward_zero_padded(t1, t2):
    """float16 rounded toward zero, one hidden unit more (noise in, zero out)"""
    rng = np.random.default_rng(89)
    w1 = np.concatenate([t1, rng.standard_normal((D, 1)).astype(np.float32) / 8], 1)
    w2 = np.concatenate([t2, np.zeros((1, D), np.float32)], 0)
    return {"w1": _f16_toward_zero(w1), "w2": _f16_toward_zero(w2)}, f_plain


def form_fp16_padded(t1, t2):
    """float16 as torch casts (nearest even), one hidden unit more"""
    s, f = form_fp16_toward_zero_padded(t1, t2)
    rng = np.random.default_rng(89)
    w1 = np.concatenate([t1, rng.standard_normal((D, 1)).astype(np.float32) / 8], 1)
    w2 = np.concatenate([t2, np.zeros((1, D), np.float32)], 0)
    return {"w1": w1.astype(np.float16), "w2": w2.astype(np.float16)}, f


PAIR_FORMS = {
    "same (a guard)": (form_same, 1e-6),
    "rounded (a guard)": (form_rounded, 1e-3),
    "plus a constant (a guard)": (form_plus_constant, 1e-3),
    "hidden units permuted": (form_permuted, 1e-5),
    "hidden units permuted, rounded": (form_permuted_rounded, 1e-3),
    "hidden units permuted and sign-flipped": (form_permuted_signed, 1e-5),
    "hidden units permuted and sign-flipped, rounded": (form_permuted_signed_rounded, 1e-3),
    "hidden units sign-flipped, rounded": (form_signed_rounded, 1e-3),
    "A + B split": (form_split, 1e-4),
    "rank-1 perturbation": (form_low_rank, 1e-3),
    "output columns scaled": (form_column_scaled, 1e-4),
    "one hidden unit padded, rounded": (form_padded_rounded, 1e-3),
    "3-D axes swapped, rounded": (form_axes_swapped_rounded, 1e-3),
    "uint8, zero point per row": (form_uint8_row_zero_points, 0.1),
    "output columns scaled by powers of two": (form_pow2_columns, 1e-5),
    "float16, output columns scaled by powers of two": (form_fp16_pow2_columns, 1e-2),
    "float16 rounded toward zero, one hidden unit padded": (form_fp16_toward_zero_padded, 1e-2),
    "float16, one hidden unit padded (a guard)": (form_fp16_padded, 1e-2),
}

# Caught since the per-vector fingerprints (fingerprint_units.c, docs/TRV.md
# "Re-encoded vectors"): every other form keeps whole rows or columns of T1
# and T2 up to a v + b.  These two change every vector (a sum of two, a
# rank-1 term added): caught since the graph's linear maps are folded
# before fingerprinting (fingerprint_fold.c, docs/TRV.md "Folded linear
# maps") - so their student is the graph that computes them, not tensors
# left in a dead end (only the graph says they are summed).
PAIR_GOT_THROUGH = set()


def _pair_mm(a, b, out):
    return helper.make_node("MatMul", [a, b], [out], name=out)


def _pair_op(op, ins, out):
    return helper.make_node(op, ins, [out], name=out)


# case -> (extra tensors, nodes from "x" to "y")
PAIR_LIVE = {
    "A + B split": ({}, [
        _pair_mm("x", "w1a", "h1a"), _pair_mm("x", "w1b", "h1b"), _pair_op("Add", ["h1a", "h1b"], "h1"),
        _pair_op("Tanh", ["h1"], "a1"), _pair_mm("a1", "w2a", "o_a"), _pair_mm("a1", "w2b", "o_b"),
        _pair_op("Add", ["o_a", "o_b"], "y")]),
    "rank-1 perturbation": ({"rt10_four": np.float32(4).reshape(())}, [
        _pair_mm("x", "w1", "p1"), _pair_mm("x", "u1", "xu1"), _pair_op("Mul", ["xu1", "rt10_four"], "xu4"),
        _pair_mm("xu4", "v1", "r1"), _pair_op("Sub", ["p1", "r1"], "h1"), _pair_op("Tanh", ["h1"], "a1"),
        _pair_mm("a1", "w2", "p2"), _pair_mm("a1", "u2", "xu2"), _pair_op("Mul", ["xu2", "rt10_four"], "xu24"),
        _pair_mm("xu24", "v2", "r2"), _pair_op("Sub", ["p2", "r2"], "y")]),
}
# what more than the correlation's element-for-element match each one beats
PAIR_WHY = {
    "output columns scaled by powers of two":
        "every teacher mantissa kept exactly, but at 7 power-of-two scales: the value "
        "sample counts hits at one scale (under half at each); the fix wanted there: "
        "count the mantissa hits over all scales, and judge the decoys the same way",
    "float16, output columns scaled by powers of two":
        "the 16-bit canonical form clears signs and writes exponents as differences "
        "between neighbours, so a scale that changes every few elements (per column) "
        "breaks every chunk; the fix wanted there: canonical forms with the exponent "
        "dropped (the 10 mantissa bits alone, chunked)",
    "float16 rounded toward zero, one hidden unit padded":
        "the canonical forms are the exact round-to-nearest-even casts; a cast rounded "
        "otherwise differs in the last bit of half the elements, so no chunk matches; "
        "the fix wanted there: canonical forms with the lowest mantissa bit(s) cleared",
}


def _pair_reason(case):
    return ("got through (red team 10): a functionally equivalent re-encoding of a teacher "
            "layer pair (" + case + ") holds no teacher byte run, no teacher mantissa and no "
            "tensor correlated element for element with a teacher tensor.  Fix proposed: "
            "compare the function, not the storage - for each student MatMul/Gemm weight "
            "(with the graph's Transpose/Reshape/Dequantize folded and Add/Sub of parallel "
            "MatMuls summed), correlate sorted per-row/per-column statistics (a "
            "permutation-invariant signature: the sorted absolute values of each row, "
            "matched row to row by a keyed hash of their ranks) and the Gram matrix "
            "W^T W of the teacher's, which permutations and sign flips of hidden units leave "
            "unchanged" + ("; also: " + PAIR_WHY[case] if case in PAIR_WHY else ""))


def _xfail(case, through, reason):
    return (pytest.param(case, marks=pytest.mark.xfail(strict=True, reason=reason(case)))
            if case in through else case)


def _weights_caught(nexus, bundle, teacher):
    from verify_helpers import codes, verify
    rc, rep = verify(nexus, bundle, "--teacher", teacher)
    return rc == 1 and codes(rep, "FAIL") & {"teacher-tensor-copied", "teacher-values-copied"}


def _is_the_teacher(form, tol):
    """the student computes the teacher's function (to tol, relative)"""
    t1, t2 = teacher_pair()
    s, fn = form(t1, t2)
    x = np.random.default_rng(3).standard_normal((16, D)).astype(np.float32)
    want = np.tanh(x @ t1) @ t2
    got = fn(x, {k: v.astype(np.float32) for k, v in s.items()})
    return float(np.abs(got - want).max() / np.abs(want).max()) < tol


@pytest.mark.parametrize("case", [_xfail(c, PAIR_GOT_THROUGH, _pair_reason)
                                  for c in sorted(PAIR_FORMS)])
def test_teacher_layer_pair_reencoded(nexus, bundle, tmp_path, case):
    from .test_teacher_small import onnx_teacher, put_student
    form, tol = PAIR_FORMS[case]
    assert _is_the_teacher(form, tol)                  # the copy is usable
    t1, t2 = teacher_pair()
    teacher = onnx_teacher(tmp_path / "t.onnx", {T1_NAME: t1, T2_NAME: t2})
    if case in PAIR_LIVE:
        from .test_teacher_fold import live_student, run_layer
        extra, nodes = PAIR_LIVE[case]
        tensors = {**form(t1, t2)[0], **extra}
        x = np.random.default_rng(3).standard_normal((2, 8, D)).astype(np.float32)
        got, want = run_layer(tensors, nodes, x), np.tanh(x @ t1) @ t2
        assert np.abs(got - want).max() / np.abs(want).max() < tol    # the graph is the teacher
        live_student(bundle, tensors, nodes)
    else:
        put_student(bundle, form(t1, t2)[0])
    assert _weights_caught(nexus, bundle, teacher)


# The insider's path: the embedder (Gather -> MatMul -> Tanh -> MatMul) built
# from the re-encoded pair, every weight live, signed by the official build.
def _pair_embedder(kind, t1, t2):
    rng = np.random.default_rng(5)
    emb = rng.standard_normal((len(ws.VOCAB), D)).astype(np.float32)
    if kind == "permuted, rounded":
        s, _ = form_permuted_rounded(t1, t2)
        tensors = {"embeddings.weight": emb, "dense1.weight": s["w1"], "dense2.weight": s["w2"]}
        nodes = [helper.make_node("MatMul", ["emb", "dense1.weight"], ["h1"]),
                 helper.make_node("Tanh", ["h1"], ["a1"]),
                 helper.make_node("MatMul", ["a1", "dense2.weight"], ["last_hidden_state"])]
    else:   # A + B split: two live MatMuls a layer, summed
        s, _ = form_split(t1, t2)
        tensors = {"embeddings.weight": emb, **s}
        nodes = [helper.make_node("MatMul", ["emb", "w1a"], ["h1a"]),
                 helper.make_node("MatMul", ["emb", "w1b"], ["h1b"]),
                 helper.make_node("Add", ["h1a", "h1b"], ["h1"]),
                 helper.make_node("Tanh", ["h1"], ["a1"]),
                 helper.make_node("MatMul", ["a1", "w2a"], ["o_a"]),
                 helper.make_node("MatMul", ["a1", "w2b"], ["o_b"]),
                 helper.make_node("Add", ["o_a", "o_b"], ["last_hidden_state"])]
    nodes.insert(0, helper.make_node("Gather", ["embeddings.weight", "input_ids"], ["emb"]))
    g = helper.make_graph(
        nodes, "embedder",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT,
                                       ["batch", "seq", D])],
        [numpy_helper.from_array(a, n) for n, a in tensors.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    return m.SerializeToString(), emb


def _runs_as_the_teacher(model, emb, t1, t2, tol):
    """the graph itself, run node by node (numpy: this Python has no
    onnxruntime, and onnx here has no reference evaluator)"""
    import onnx
    m = onnx.load_from_string(model)
    env = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    env["input_ids"] = np.arange(len(ws.VOCAB), dtype=np.int64)[None, :]
    ops = {"Gather": lambda a, i: a[i], "MatMul": np.matmul, "Add": np.add, "Tanh": np.tanh}
    for n in m.graph.node:
        env[n.output[0]] = ops[n.op_type](*(env[i] for i in n.input))
    got = env["last_hidden_state"][0]
    want = np.tanh(emb @ t1) @ t2
    return float(np.abs(got - want).max() / np.abs(want).max()) < tol


SIGNED_PAIR = {"permuted, rounded": 1e-3, "A + B split": 1e-4}


@pytest.mark.parametrize("kind", [_xfail(k, PAIR_GOT_THROUGH, _pair_reason)
                                  for k in sorted(SIGNED_PAIR)])
def test_teacher_layer_pair_reencoded_signed(nexus, release_key, tmp_path, kind):
    from test_quantize import EMBED_RT
    t1, t2 = teacher_pair()
    model, emb = _pair_embedder(kind, t1, t2)
    assert _runs_as_the_teacher(model, emb, t1, t2, SIGNED_PAIR[kind])
    root = ws.make_workspace(tmp_path / "ws", student=model, runtime_yaml=EMBED_RT)
    teacher_onnx(root, {T1_NAME: t1, T2_NAME: t2})
    why = signed_build_is_refused(nexus, root, tmp_path / "bundle", release_key)
    assert "teacher" in why, why


# ------------------------------------- Python: what `self` is bound to
# pyaudit_bind.c lets only a def's first parameter bind self or cls, and
# the names pass trusts what is reached from them (self.__dict__,
# self.__class__, self.__init__, type(self), self._private).  But a def's
# first parameter is whatever its caller passes: a module-level function,
# a nested one, a @staticmethod, or a method called through its class
# (`View.ns(os)`) takes any object as self - a module (its namespace dict
# reaches __builtins__ and __import__: a computed import of torch.optim),
# or np.load's NpzFile (its class, re-made with allow_pickle, runs a
# pickle).
def _dict_door(helper, ns):
    """helper (defs binding self), then fit: the NpzFile's own attribute
    dict, reached through self, switches allow_pickle on"""
    return (helper + "\n\ndef fit(npz):\n    z = np.load(io.BytesIO(npz))\n"
            f"    d = {ns.format('z')}\n"
            "    d[next(k for k in d if k.startswith('allow'))] = True\n    return z['a']\n")


SELF_DOORS = {
    "a module-level function's self": _dict_door(
        "def opts(self):\n    return self.__dict__\n", "opts({})"),
    "a nested function's self": _dict_door(
        "def outer():\n    def opts(self):\n        return self.__dict__\n    return opts\n",
        "outer()({})"),
    "a staticmethod's self": _dict_door(
        "class View:\n    @staticmethod\n    def opts(self):\n        return self.__dict__\n",
        "View.opts({})"),
    "a method called through its class": _dict_door(
        "class View:\n    def opts(self):\n        return self.__dict__\n", "View.opts({})"),
    "functools.partial of a method": _dict_door(
        "import functools\n\n\nclass View:\n    def opts(self):\n"
        "        return self.__dict__\n", "functools.partial(View.opts, {})()"),
    "a method kept as a value": _dict_door(
        "class View:\n    def opts(self):\n        return self.__dict__\n\n\n"
        "OPTS = View.opts\n", "OPTS({})"),
    "a decorator that calls the method on another object": _dict_door(
        "def bind(f):\n    def wrapper(inst, z):\n        return f(z)\n    return wrapper\n\n\n"
        "class View:\n    @bind\n    def opts(self):\n        return self.__dict__\n",
        "View().opts({})"),
    # the first parameter named cls is no different (review of the fix)
    "cls, a method called through its class": _dict_door(
        "class View:\n    def opts(cls):\n        return cls.__dict__\n", "View.opts({})"),
    "cls, a classmethod over a wrapper that calls it on another object": _dict_door(
        "def bind(f):\n    def wrapper(k, z):\n        return f(z)\n    return wrapper\n\n\n"
        "class View:\n    @classmethod\n    @bind\n    def opts(cls):\n"
        "        return cls.__dict__\n", "View.opts({})"),
    "a classmethod's function": _dict_door(
        "class View:\n    @classmethod\n    def opts(cls):\n        return cls.__dict__\n",
        "View.opts.__func__({})"),
}
# the unpickling doors of red team 9, with self bound by a call
NPZ_DOORS = {
    "type(self) of an NpzFile": (
        "def remake(self, f):\n    return type(self)(f, False, True)\n\n\n"
        "def fit(npz):\n    z = np.load(io.BytesIO(npz))\n"
        "    return remake(z, io.BytesIO(npz))['a']\n"),
    "self.__init__ of an NpzFile": (
        "def reinit(self, f):\n    self.__init__(f, False, True)\n    return self\n\n\n"
        "def fit(npz):\n    z = np.load(io.BytesIO(npz))\n"
        "    return reinit(z, io.BytesIO(npz))['a']\n"),
    "cls.__init__ of an NpzFile, unbound method": (
        "class Loader:\n    def reinit(cls, f):\n        cls.__init__(f, False, True)\n"
        "        return cls\n\n\n"
        "def fit(npz):\n    z = np.load(io.BytesIO(npz))\n"
        "    return Loader.reinit(z, io.BytesIO(npz))['a']\n"),
    "self.__class__ of an NpzFile, unbound method": (
        "class Loader:\n    def kind(self):\n        return self.__class__\n\n\n"
        "def fit(npz):\n    z = np.load(io.BytesIO(npz))\n"
        "    return Loader.kind(z)(io.BytesIO(npz), False, True)['a']\n"),
}
# Closed: self and cls are trusted only as the first parameter of a def
# directly in a class body, not a @staticmethod (pyaudit_bind.c,
# method_self); and since a method's function reached through its class
# (called, kept, given to functools.partial) or called by a decorator's
# wrapper takes any object as self, the forms that rewrite or re-make an
# object - self.__dict__, self.__init__, self.__class__(...), type(self) -
# are not trusted on self at all (pyaudit_names.c).
SELF_GOT_THROUGH = set()


def _self_reason(case):
    return ("got through (red team 10): the audit trusts self/cls inside a method, but a "
            "method's function called through its class, kept as a value, wrapped by "
            "functools.partial or by a decorator takes any object as self (" + case + "): "
            "self.__dict__ / self.__class__ of np.load's NpzFile switch allow_pickle on or "
            "re-make it with allow_pickle.  Fix proposed: refuse a bundle class's "
            "attribute that is a def with self (Class.method) other than as "
            "Base.method(self, ...) inside a method, and trust self only in methods with no "
            "decorator but property/classmethod/abstractmethod/x.setter; or stop trusting "
            "self.__dict__, self.__class__(...) and type(self)(...) at all")


def _self_src(case):
    from token_payloads import FIT, pickled_exec
    return (f"import io\nimport numpy as np\nBLOB = {pickled_exec(FIT)!r}\n\n\n"
            + {**SELF_DOORS, **NPZ_DOORS}[case])


def _npz_with_pickle(blob):
    """an npz whose member a.npy is an object array: the pickle `blob`"""
    import io
    import zipfile
    npy = io.BytesIO()
    np.lib.format.write_array_header_1_0(npy, {"descr": "|O", "fortran_order": False,
                                               "shape": (1,)})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.npy", npy.getvalue() + blob)
    return buf


def test_self_doors_are_real(tmp_path):
    """each SELF_DOORS fit takes an SGD step; each NPZ_DOORS fit runs the
    pickle in an npz (a harmless assignment in place of the step)"""
    import builtins
    import io
    from token_payloads import pickled_exec
    for case, src in {**SELF_DOORS, **NPZ_DOORS}.items():
        buf = _npz_with_pickle(pickled_exec("import builtins; builtins._rt10 = 10"))
        ns = {"__name__": "probe"}
        exec(compile(f"import io\nimport numpy as np\n" + src, case, "exec"), ns)
        try:
            ns["fit"](buf.getvalue())
        except Exception:
            pass
        assert getattr(builtins, "_rt10", None) == 10, case
        del builtins._rt10


@pytest.mark.parametrize("case", [_xfail(c, SELF_GOT_THROUGH, _self_reason)
                                  for c in sorted(SELF_DOORS) + sorted(NPZ_DOORS)])
def test_self_bound_by_a_caller(nexus, bundle, case):
    from verify_helpers import codes, verify
    bundle.smuggle("src/helpers.py", _self_src(case))
    rc, rep = verify(nexus, bundle)
    assert rc == 1 and codes(rep, "FAIL") & {"python-reflective", "dynamic-import"}, \
        [f["message"] for f in rep["findings"] if f["severity"] != "INFO"]


def test_self_bound_by_a_caller_signed(nexus, release_key, tmp_path):
    """The insider's path for one case the branch closes: the official build
    refuses a module-level def binding self."""
    root = ws.make_workspace(tmp_path / "ws", utils_py=ws.UTILS_PY + "\n\n" +
                             _self_src("a module-level function's self"))
    why = signed_build_is_refused(nexus, root, tmp_path / "bundle", release_key)
    assert "python-reflective" in why and "first parameter" in why, why


def test_self_bound_through_the_class_signed(nexus, release_key, tmp_path):
    root = ws.make_workspace(tmp_path / "ws", utils_py=ws.UTILS_PY + "\n\n" +
                             _self_src("a method called through its class"))
    why = signed_build_is_refused(nexus, root, tmp_path / "bundle", release_key)
    assert "python-reflective" in why, why


# ------------------ Python: an NpzFile's allow_pickle by other reflection
# More ways to switch allow_pickle on or re-make an NpzFile with it, none
# naming `allow_pickle`, `__dict__` or `__init__` off a foreign object.
# All caught (regression guards); the one that is not is a method called
# through its class (SELF_DOORS above).
_KEY = "next(k for k in dir(z) if k.startswith('allow'))"
_FIT = "def fit(npz):\n    z = np.load(io.BytesIO(npz))\n"
REFLECT_DOORS = {
    "vars()": _FIT + f"    vars(z)[{_KEY}] = True\n    return z['a']\n",
    "setattr with a computed name": _FIT + f"    setattr(z, {_KEY}, True)\n    return z['a']\n",
    "object.__setattr__": _FIT + f"    object.__setattr__(z, {_KEY}, True)\n    return z['a']\n",
    "operator.attrgetter of __dict__": (
        "import operator\n\n\n" + _FIT +
        f"    operator.attrgetter('__di' + 'ct__')(z)[{_KEY}] = True\n    return z['a']\n"),
    "operator.methodcaller of __init__": (
        "import operator\n\n\n" + _FIT +
        "    operator.methodcaller('__in' + 'it__', io.BytesIO(npz), False, True)(z)\n"
        "    return z['a']\n"),
    "a subclass's super().__init__": (
        "from numpy.lib import npyio\n\n\nclass Z(npyio.NpzFile):\n"
        "    def __init__(self, f):\n        super().__init__(f, False, True)\n\n\n"
        "def fit(npz):\n    return Z(io.BytesIO(npz))['a']\n"),
    "a subclass's Base.__init__(self, ...)": (
        "from numpy.lib import npyio\n\n\nclass Z(npyio.NpzFile):\n"
        "    def __init__(self, f):\n        npyio.NpzFile.__init__(self, f, False, True)\n\n\n"
        "def fit(npz):\n    return Z(io.BytesIO(npz))['a']\n"),
    "a subclass's own attribute": (
        "from numpy.lib import npyio\n\n\nclass Z(npyio.NpzFile):\n"
        "    def open(self):\n        self.__dict__[" + _KEY.replace("(z)", "(self)") +
        "] = True\n        return self\n\n\n"
        "def fit(npz):\n    z = np.load(io.BytesIO(npz))\n    z.__class__ = Z\n"
        "    return z.open()['a']\n"),
    # the builtin classes that match themselves (`case str(x):` binds the
    # subject) are told by name; a class of that name with __match_args__,
    # made an instance check of every Mapping by ABC registration, reads
    # the NpzFile's __dict__ in a case pattern (caught: __match_args__ is
    # refused by name; a dataclass or namedtuple sets it only to public,
    # non-underscore names, which code may read anyway)
    "a builtin class name rebound in a class pattern": (
        "import abc\nimport collections.abc\n\n\nclass str(abc.ABC):\n"
        "    __match_args__ = ('__dict__',)\n\n\nstr.register(collections.abc.Mapping)\n\n\n"
        + _FIT + "    match z:\n        case str(d):\n"
        "            d[next(k for k in d if k.startswith('allow'))] = True\n"
        "    return z['a']\n"),
}
REFLECT_GOT_THROUGH = set()


def _reflect_reason(case):
    return ("got through (red team 10): " + case + ": pyaudit_bind.c's self_matching() "
            "trusts the names bool/bytes/dict/.../str/tuple, whatever they are bound to.  "
            "Fix proposed: refuse binding those names (class, def, assignment, import as) "
            "anywhere in the bundle, and refuse __match_args__ and ABC register()")


def _reflect_src(case):
    from token_payloads import FIT, pickled_exec
    return (f"import io\nimport numpy as np\nBLOB = {pickled_exec(FIT)!r}\n\n\n"
            + REFLECT_DOORS[case])


def test_reflect_doors_are_real():
    import builtins
    from token_payloads import pickled_exec
    for case, src in REFLECT_DOORS.items():
        buf = _npz_with_pickle(pickled_exec("import builtins; builtins._rt10 = 10"))
        ns = {"__name__": "probe"}
        exec(compile("import io\nimport numpy as np\n" + src, case, "exec"), ns)
        try:
            ns["fit"](buf.getvalue())
        except Exception:
            pass
        assert getattr(builtins, "_rt10", None) == 10, case
        del builtins._rt10


@pytest.mark.parametrize("case", [_xfail(c, REFLECT_GOT_THROUGH, _reflect_reason)
                                  for c in sorted(REFLECT_DOORS)])
def test_npzfile_reflection(nexus, bundle, case):
    from verify_helpers import codes, verify
    bundle.smuggle("src/helpers.py", _reflect_src(case))
    rc, rep = verify(nexus, bundle)
    assert rc == 1 and codes(rep, "FAIL") & {"python-reflective", "dynamic-import"}, \
        [f["message"] for f in rep["findings"] if f["severity"] != "INFO"]


# ------------------------------------------ --accept-shared: what a name buys
# The deployer accepts one student tensor, by name, as shared with the
# teacher (a tied or frozen base layer).  What it accepts is a name: any
# teacher tensor may sit under it, and nx_quant_same_tensor also accepts
# the name followed by /int8, /int4 or /fp16 - names the quantizer writes,
# but the student's own initializers may bear them too.  Four teacher
# layers (256 KiB) pass for one accepted name.
def _layers(n=4, seed=60):
    rng = np.random.default_rng(seed)
    return {f"encoder.layer.{i}.output.dense": (rng.standard_normal((256, 64)) / 8)
            .astype(np.float32) for i in range(n)}


SHARED_CASES = {
    # the deployer accepts dense2.weight for layer 0; the student also holds
    # layers 1-3 under the names the quantizer would give dense2.weight
    "siblings /int8 /int4 /fp16": lambda ls: {
        "dense2.weight": ls[0], "dense2.weight/int8": ls[1], "dense2.weight/int4": ls[2],
        "dense2.weight/fp16": ls[3]},
    # a guard: a fourth name is checked
    "another name (a guard)": lambda ls: {"dense2.weight": ls[0], "dense3.weight": ls[1]},
}
SHARED_GOT_THROUGH = set()   # one student tensor per accepted name since (verify_teacher.c)


def _shared_reason(case):
    return ("got through (red team 10): --accept-shared NAME also accepts NAME/int8, "
            "NAME/int4 and NAME/fp16 (nx_quant_same_tensor), names a student's own "
            "initializers may bear: four teacher layers for one accepted name.  Fix "
            "proposed: accept the suffixed names only for tensors the build's quantizer "
            "wrote (a DequantizeLinear/MatMulNBits whose float source was NAME: the "
            "manifest's quantize record), and bind the acceptance to one teacher tensor "
            "(--accept-shared NAME=TEACHER_TENSOR), so no other teacher tensor hides "
            "under the accepted name")


@pytest.mark.parametrize("case", [_xfail(c, SHARED_GOT_THROUGH, _shared_reason)
                                  for c in sorted(SHARED_CASES)])
def test_accept_shared_covers_one_tensor(nexus, bundle, tmp_path, case):
    from verify_helpers import codes, verify
    from .test_teacher_small import onnx_teacher, put_student
    ls = list(_layers().values())
    teacher = onnx_teacher(tmp_path / "t.onnx", dict(zip(_layers(), ls)))
    put_student(bundle, SHARED_CASES[case](ls))
    rc, rep = verify(nexus, bundle, "--teacher", teacher, "--accept-shared", "dense2.weight")
    fails = codes(rep, "FAIL")
    assert rc == 1 and fails & {"teacher-tensor-copied", "teacher-values-copied"}, fails


def test_accept_shared_given_twice_is_one_name(nexus, bundle, tmp_path):
    """the name repeated (by the gate, or the signed policy beside it) is
    one name: it covered one tensor per entry (review of the fix above)"""
    from verify_helpers import codes, verify
    from .test_teacher_small import onnx_teacher, put_student
    ls = list(_layers().values())
    teacher = onnx_teacher(tmp_path / "t.onnx", dict(zip(_layers(), ls)))
    put_student(bundle, {"dense2.weight": ls[0], "dense2.weight/int8": ls[1]})
    rc, rep = verify(nexus, bundle, "--teacher", teacher, "--accept-shared", "dense2.weight",
                     "--accept-shared", "dense2.weight")
    fails = codes(rep, "FAIL")
    assert rc == 1 and fails & {"teacher-tensor-copied", "teacher-values-copied"}, fails


def test_accept_shared_name_in_subgraphs(nexus, bundle, tmp_path):
    """ONNX names are unique within one graph only: an If's branches hold
    their own initializer of the accepted name (review of the fix above)"""
    import bundle_fixture as bf
    from onnx_smuggling import sink_nodes
    from verify_helpers import codes, verify
    from .test_teacher_small import onnx_teacher
    ls = list(_layers().values())
    teacher = onnx_teacher(tmp_path / "t.onnx", dict(zip(_layers(), ls)))
    nodes = sink_nodes("dense2.weight", to_float=False)
    inits = [numpy_helper.from_array(np.zeros((), np.float32), "zero"),
             numpy_helper.from_array(ls[0], "dense2.weight")]

    def branch(i, arr):
        return helper.make_graph(
            [helper.make_node("ReduceSum", ["dense2.weight"], [f"o{i}"], keepdims=0)],
            f"b{i}", [], [helper.make_tensor_value_info(f"o{i}", TensorProto.FLOAT, [])],
            [numpy_helper.from_array(arr, "dense2.weight")])
    nodes += [helper.make_node("Cast", ["input_ids"], ["idf"], to=TensorProto.FLOAT, name="c1"),
              helper.make_node("ReduceSum", ["idf"], ["ids_s"], keepdims=0, name="r1"),
              helper.make_node("Greater", ["ids_s", "zero"], ["cond"], name="g1"),
              helper.make_node("If", ["cond"], ["ifo"], name="if1",
                               then_branch=branch(1, ls[1]), else_branch=branch(2, ls[2]))]
    m = bf.student_model(extra_nodes=nodes, extra_initializers=inits)
    m.graph.output.append(helper.make_tensor_value_info("ifo", TensorProto.FLOAT, []))
    bundle.meta["parameters"] = bf.human(bf.parameters(m) + 2 * ls[0].size)
    bundle.smuggle("model/student_model.onnx", m.SerializeToString())
    rc, rep = verify(nexus, bundle, "--teacher", teacher, "--accept-shared", "dense2.weight")
    fails = codes(rep, "FAIL")
    assert rc == 1 and fails & {"teacher-tensor-copied", "teacher-values-copied"}, fails


# ------------------------- small teacher tensors, 16-bit but not the cast
# The canonical 16-bit forms (fingerprint_canon.c) and the 8 anchors of
# small tensors match the float16/bfloat16 casts torch makes (round to
# nearest even).  Red team 9's 21 vectors of 768 floats (63 KiB) cast
# otherwise - rounded toward zero - differ from the cast in the last bit of
# about half their elements, and carry the same 3 significant digits.
# Laid end to end in one tensor, so no student tensor has a vector's size.
def _bf16_toward_zero(v):
    from onnx import TensorProto as TP
    return (v.view(np.uint32) >> 16).astype(np.uint16), TP.BFLOAT16


def _bf16_nearest(v):
    from onnx import TensorProto as TP
    u = v.view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16), TP.BFLOAT16


def _as_tensor(name, bits_type):
    from onnx import TensorProto as TP
    bits, dtype = bits_type
    t = TP()
    t.name, t.data_type = name, dtype
    t.dims.extend([bits.size])
    t.raw_data = bits.tobytes()
    return t


SIXTEEN_FORMS = {
    "float16 as torch casts (a guard)": lambda v: (v.astype(np.float16).view(np.uint16),
                                                   TensorProto.FLOAT16),
    "bfloat16 as torch casts (a guard)": _bf16_nearest,
    "float16 rounded toward zero": lambda v: (_f16_toward_zero(v).view(np.uint16),
                                              TensorProto.FLOAT16),
    "bfloat16 rounded toward zero": _bf16_toward_zero,
}
# float16 rounded toward zero is found since the pool reads 16-bit student
# tensors widened (fingerprint_pool.c); bfloat16's 8 bits are too coarse
# for ratios kept to 2^-12, so the pool also keys a float32 teacher's
# small tensors truncated to bfloat16 (the B16 families, for windows of
# bfloat16 values only): found since branch pool3
SIXTEEN_GOT_THROUGH = set()


def _sixteen_reason(case):
    return ("got through (red team 10): small teacher tensors are recorded as their bytes "
            "and their round-to-nearest-even 16-bit casts; " + case + " differs from the "
            "cast in the last bit of half the elements (63 KiB of teacher vectors, 3 "
            "significant digits each).  Fix proposed: the canonical 16-bit forms and "
            "anchors with the lowest mantissa bit cleared (both roundings meet there)")


@pytest.mark.parametrize("case", [_xfail(c, SIXTEEN_GOT_THROUGH, _sixteen_reason)
                                  for c in sorted(SIXTEEN_FORMS)])
def test_small_teacher_tensors_in_16_bits(nexus, bundle, tmp_path, case):
    from .test_redteam9 import small_vectors
    from .test_teacher_small import onnx_teacher, put_student
    vs = small_vectors()
    teacher = onnx_teacher(tmp_path / "t.onnx", vs)
    # one tensor: the vectors one after another (no tensor of a vector's size
    # for the correlation), after 3 elements of noise
    flat = np.concatenate([np.float32([0.01, -0.02, 0.03])] + list(vs.values()))
    put_student(bundle, {"h": _as_tensor("h", SIXTEEN_FORMS[case](flat))})
    assert _weights_caught(nexus, bundle, teacher)


# ------------------------------- a second tokenizer file beside the first
# Tier 2 bounds the vocabulary the runtime loads (tokenizer.json, or
# vocab.txt); 72 KiB of teacher bytes as plausible-looking word tokens in
# the files other tokenizers ship must be charged in full, or refused.
# All are (regression guards): the path is unexpected, and charged.
def _word_tokens(nbytes=72 << 10):
    import base64
    text = base64.b32encode(np.random.default_rng(19).bytes(nbytes)).decode().lower()
    return [text[i:i + 8] for i in range(0, len(text), 8)]


SECOND_FILES = {
    "model/tokenizer/merges.txt": lambda w: "#version: 0.2\n" + "".join(
        f"{a} {b}\n" for a, b in zip(w[0::2], w[1::2])),
    "model/tokenizer/vocab.json": lambda w: __import__("json").dumps(
        {t: i for i, t in enumerate(w)}),
    "model/tokenizer/special_tokens_map.json": lambda w: __import__("json").dumps(
        {"additional_special_tokens": w}),
    "model/tokenizer/added_tokens.json": lambda w: __import__("json").dumps(
        {t: 30000 + i for i, t in enumerate(w)}),
}


@pytest.mark.parametrize("path", sorted(SECOND_FILES))
def test_a_second_tokenizer_file(nexus, bundle, path):
    from verify_helpers import codes, verify
    bundle.smuggle(path, SECOND_FILES[path](_word_tokens()))
    rc, rep = verify(nexus, bundle)
    assert rc == 1 and codes(rep, "FAIL") & {"budget-exceeded", "unexpected-path"}, \
        codes(rep, "FAIL")
