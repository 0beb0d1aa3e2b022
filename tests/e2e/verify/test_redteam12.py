"""Red team 12 (issue #22): attacks on what stop 21 added - the folded
linear maps (fingerprint_fold.c) and the vectors moved within themselves
(fingerprint_perm.c).  An insider controls only the workspace and runs the
official `nexus build --key`; the gate is

    nexus verify --strict --require-signature --pubkey RELEASE.pub
                 --teacher artifacts/teacher.onnx --teacher checkpoints/teacher.pt

Cases the gate catches guard against regressions; cases that get through
are strict xfails naming their class and the fix wanted (docs/TRV.md).
The spellings docs/TRV.md "Known limits" lists already (an Identity
between a MatMul and the Add, a Mul by a vector, [x, x] @ [A; B], 3-D
weights, Einsum, int8 through Cast and Mul, per-element axis scaling, a
vector padded by one element) are not repeated here.
"""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import workspace as ws
from .test_redteam7 import signed_build_is_refused, teacher_onnx
from .test_redteam10 import D, H, T1_NAME, T2_NAME, _rounded, _weights_caught, _xfail, teacher_pair
from .test_redteam11 import P_HID, P_IN, P_OUT

F = TensorProto.FLOAT


def _noise(shape, seed, scale=0.5):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def _node(op, ins, out, **kw):
    return helper.make_node(op, ins, [out], name=out, **kw)


def _mm(a, b, out):
    return _node("MatMul", [a, b], out)


# ---------------------------------- folded linear maps: spellings of a sum
# fingerprint_fold.c starts a sum at Add/Sub/Sum/Neg nodes and takes as
# terms MatMul (weight on either side) and Gemm with the weight as its B
# operand.  Each student below computes x @ T1 (T1: red team 10's teacher
# layer, [64, 256], 64 KiB) as A + B, A noise, through a node the fold
# does not read as a sum or as a term; none of the stored tensors is T1 or
# correlates with it.  "x" is [2, 8, 64], "x2" the same as [16, 64].
# All were strict xfails on main 9f24fb3; fold3 reads each (Gemm's C, Gemm
# with the weight as A, 1x1 Conv, a Clip past +-1e30, a Transpose of the
# last two axes), and they are guards now.
def g_gemm_c(t1):
    """Gemm's third operand is added to its product: Gemm(x, A, C = x B)
    is x A + x B in one node, no Add anywhere"""
    a = _noise(t1.shape, 21)
    return {"fa": a, "fb": t1 - a}, [_mm("x2", "fb", "q"), _node("Gemm", ["x2", "fa", "q"], "y")]


def g_gemm_left(t1):
    """the weights as Gemm's A operand: Gemm(A^T, x^T) + Gemm(B^T, x^T) is
    (x T1)^T; MatMul(W, x) is a term, Gemm(W, x) is not"""
    a = _noise(t1.shape, 22)
    return {"fa": a.T.copy(), "fb": (t1 - a).T.copy()}, [
        _node("Transpose", ["x2"], "xt", perm=[1, 0]), _node("Gemm", ["fa", "xt"], "pt"),
        _node("Gemm", ["fb", "xt"], "qt"), _node("Add", ["pt", "qt"], "yt"),
        _node("Transpose", ["yt"], "y", perm=[1, 0])]


def g_conv(t1):
    """two 1x1 Convs of x laid out [1, 64, 16, 1], summed: a Conv of kernel
    1 is a MatMul the fold does not know"""
    a = _noise(t1.shape, 23)
    return ({"fa": a.T[:, :, None, None].copy(), "fb": (t1 - a).T[:, :, None, None].copy(),
             "s4": np.int64([1, D, -1, 1]), "s2": np.int64([H, -1])}, [
        _node("Transpose", ["x2"], "xt", perm=[1, 0]), _node("Reshape", ["xt", "s4"], "x4"),
        _node("Conv", ["x4", "fa"], "p4"), _node("Conv", ["x4", "fb"], "q4"),
        _node("Add", ["p4", "q4"], "y4"), _node("Reshape", ["y4", "s2"], "yt"),
        _node("Transpose", ["yt"], "y", perm=[1, 0])])


def g_clip(t1):
    """a Clip to +-1e30 on one term: the identity on every value the layer
    takes, but not a node the fold looks through (nor a linear one)"""
    a = _noise(t1.shape, 24)
    return {"fa": a, "fb": t1 - a, "lo": np.float32(-1e30), "hi": np.float32(1e30)}, [
        _mm("x", "fa", "p"), _node("Clip", ["p", "lo", "hi"], "pc"), _mm("x", "fb", "q"),
        _node("Add", ["pc", "q"], "y")]


def g_transposed_term(t1):
    """one term stored and computed the other way round and its output
    transposed back: x A + (B^T x^T)^T - each term alone is one the fold
    knows, but a Transpose on a term's output is not looked through"""
    a = _noise(t1.shape, 25)
    return {"fa": a, "fb": (t1 - a).T.copy()}, [
        _mm("x2", "fa", "p"), _node("Transpose", ["x2"], "xt", perm=[1, 0]),
        _mm("fb", "xt", "qt"), _node("Transpose", ["qt"], "q", perm=[1, 0]),
        _node("Add", ["p", "q"], "y")]


def g_plain_split(t1):
    """a guard: A + B as two MatMuls summed (red team 10, caught)"""
    a = _noise(t1.shape, 26)
    return {"fa": a, "fb": t1 - a}, [_mm("x", "fa", "p"), _mm("x", "fb", "q"),
                                     _node("Add", ["p", "q"], "y")]


def g_gemm_c_guard(t1):
    """a guard: Gemm(x, A) + MatMul(x, B) with an Add (caught); the same
    terms as g_gemm_c but summed by a node the fold reads"""
    a = _noise(t1.shape, 21)
    return {"fa": a, "fb": t1 - a}, [_mm("x2", "fb", "q"), _node("Gemm", ["x2", "fa"], "p"),
                                     _node("Add", ["p", "q"], "y")]


def g_split_permuted(t1):
    """a guard: A + B of T1 with both its axes permuted (fold and perm
    compose: the fold's matrix goes through the perm check); x permuted by a
    Gather, the output unpermuted by another"""
    tp = t1[P_IN][:, P_HID]
    a = _noise(t1.shape, 27)
    return {"fa": a, "fb": tp - a, "pin": P_IN.astype(np.int64),
            "unhid": np.argsort(P_HID).astype(np.int64)}, [
        _node("Gather", ["x", "pin"], "xp", axis=2), _mm("xp", "fa", "p"), _mm("xp", "fb", "q"),
        _node("Add", ["p", "q"], "yp"), _node("Gather", ["yp", "unhid"], "y", axis=2)]


FOLD_FORMS = {
    "A + B of T1 with both axes permuted (a guard)": g_split_permuted,
    "the second term as Gemm's C operand": g_gemm_c,
    "the weights as Gemm's A operand": g_gemm_left,
    "two 1x1 Convs summed": g_conv,
    "a Clip to +-1e30 on one term": g_clip,
    "one term's output transposed back": g_transposed_term,
    "A + B, two MatMuls and an Add (a guard)": g_plain_split,
    "Gemm and MatMul and an Add (a guard)": g_gemm_c_guard,
}
FOLD_WHY = {
    "the second term as Gemm's C operand":
        "Gemm's C input is a sum operand: expand it as Add(alpha A B, beta C), and start "
        "a sum at any Gemm with a C",
    "the weights as Gemm's A operand":
        "read Gemm(W, x) (transA, transB) as a left term like MatMul(W, x)",
    "two 1x1 Convs summed":
        "read a Conv whose kernel is 1 x 1 (any rank, group 1, stride 1, no pad) as a "
        "MatMul by its [out, in] kernel, and MatMulInteger/QLinearMatMul likewise",
    "a Clip to +-1e30 on one term":
        "a Clip, Max or Min whose bounds no finite value of a float32 layer reaches is "
        "the identity: look through it (and Relu(v + c) - c with c past the layer's "
        "range); better, fold terms under any elementwise op and judge the fold",
    "one term's output transposed back":
        "look through a 2-D Transpose on a term's output and flip its side",
}


def _fold_reason(case):
    return ("got through (red team 12): a teacher layer (64 KiB) kept as A + B, A noise, "
            "summed by the graph as " + case + ": no stored tensor is the teacher's or "
            "correlates with it, and fingerprint_fold.c does not read the sum.  Fix "
            "proposed: " + FOLD_WHY[case])


FOLD_THROUGH = set()     # every spelling is folded now (fold3)


def _conv(x, w):
    return np.einsum("nchw,oc->nohw", x, w[:, :, 0, 0])


def _gemm(a, b, c=None, transA=0, transB=0, alpha=1.0, beta=1.0):
    r = alpha * ((a.T if transA else a) @ (b.T if transB else b))
    return r if c is None else r + beta * c


OPS = {"Gather": lambda a, i, axis=0: np.take(a, i, axis=axis), "MatMul": np.matmul, "Add": np.add, "Gemm": _gemm, "Conv": _conv,
       "Clip": lambda a, lo, hi: np.clip(a, lo, hi), "Reshape": lambda a, s: a.reshape(s),
       "Transpose": lambda a, perm=None: np.transpose(a, perm)}


def _fold_computes(tensors, nodes, t1):
    x = np.random.default_rng(3).standard_normal((2, 8, D)).astype(np.float32)
    env = {k: np.asarray(v) for k, v in tensors.items()}
    env["x"], env["x2"] = x, x.reshape(-1, D)
    for n in nodes:
        kw = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        env[n.output[0]] = OPS[n.op_type](*(env[i] for i in n.input), **kw)
    got, want = env["y"].reshape(-1, H), x.reshape(-1, D) @ t1
    return float(np.abs(got - want).max() / np.abs(want).max()) < 1e-5


@pytest.mark.parametrize("case", [_xfail(c, FOLD_THROUGH, _fold_reason) for c in sorted(FOLD_FORMS)])
def test_teacher_layer_as_a_sum_spelled_otherwise(nexus, bundle, tmp_path, case):
    from .test_teacher_fold import live_student
    from .test_teacher_small import onnx_teacher
    t1, t2 = teacher_pair()
    tensors, nodes = FOLD_FORMS[case](t1)
    assert _fold_computes(tensors, nodes, t1)          # the graph is the teacher's layer
    teacher = onnx_teacher(tmp_path / "t.onnx", {T1_NAME: t1, T2_NAME: t2})
    live_student(bundle, tensors, nodes)
    assert _weights_caught(nexus, bundle, teacher)



# What fold3 reads must stay exact: a Clip that bounds the layer's values,
# or a Conv that strides, changes the function, so the sum through it is
# not A + B and must not be folded; the same split of T1 through them is
# not reported (a fold there would be a false reading of the graph).
def n_clip_finite(t1):
    """Clip(x A, -1, 1) + x B: not x T1 (the bounds are in the layer's range)"""
    a = _noise(t1.shape, 24)
    return {"fa": a, "fb": t1 - a, "lo": np.float32(-1.0), "hi": np.float32(1.0)}, [
        _mm("x", "fa", "p"), _node("Clip", ["p", "lo", "hi"], "pc"), _mm("x", "fb", "q"),
        _node("Add", ["pc", "q"], "y")]


def n_conv_strided(t1):
    """two 1x1 Convs of stride 2: every other position, no MatMul of x"""
    a = _noise(t1.shape, 23)
    return ({"fa": a.T[:, :, None, None].copy(), "fb": (t1 - a).T[:, :, None, None].copy(),
             "s4": np.int64([1, D, -1, 1])}, [
        _node("Transpose", ["x2"], "xt", perm=[1, 0]), _node("Reshape", ["xt", "s4"], "x4"),
        _node("Conv", ["x4", "fa"], "p4", strides=[2, 1]),
        _node("Conv", ["x4", "fb"], "q4", strides=[2, 1]), _node("Add", ["p4", "q4"], "y")])


NOT_FOLDED = {"a Clip to +-1 on one term": n_clip_finite,
              "strided 1x1 Convs": n_conv_strided}


@pytest.mark.parametrize("case", sorted(NOT_FOLDED))
def test_sum_through_a_function_changing_op_not_folded(nexus, bundle, tmp_path, case):
    from .test_teacher_fold import live_student
    from .test_teacher_small import onnx_teacher
    t1, t2 = teacher_pair()
    tensors, nodes = NOT_FOLDED[case](t1)
    teacher = onnx_teacher(tmp_path / "t.onnx", {T1_NAME: t1, T2_NAME: t2})
    live_student(bundle, tensors, nodes)
    assert not _weights_caught(nexus, bundle, teacher)


# --------------------------- vectors moved within themselves, and then some
# fingerprint_perm.c keys a whole teacher row or column (64 to 65536
# elements) by its sorted, standardised profile: a permutation keeps a
# vector's multiset, so its profile.  Two things a function-preserving
# re-encoding can do besides permuting change every vector's multiset or
# length, with every value kept to 5 significant digits:
# - signs: tanh is odd, so a hidden unit's sign flips with T1's column and
#   T2's row; an input feature's sign goes into the student's embedding,
#   an output feature's is undone on the output (a Mul by +-1).  With all
#   three axes flipped at random, each row and column of T1 and T2 has
#   about half its elements negated: its sorted profile is another
#   vector's (diag(+-1) scaling: the |v| profile is unchanged);
# - blocks: the layer cut in [32, 128] blocks (input halves x hidden
#   halves) after permuting every axis, x's halves each multiplied by its
#   blocks and summed: no stored vector is 64 or 256 long any more (the
#   lengths a teacher vector has), every piece of a teacher vector is a
#   permuted subset of it.
def _signs(n, seed):
    return np.where(np.random.default_rng(seed).random(n) < 0.5, -1, 1).astype(np.float32)


S_IN, S_HID, S_OUT = _signs(D, 94), _signs(H, 95), _signs(D, 96)


def form_signed_all_axes_rounded(t1, t2):
    w1 = (t1 * S_IN[:, None] * S_HID[None, :])[P_IN][:, P_HID]
    w2 = (t2 * S_HID[:, None] * S_OUT[None, :])[P_HID][:, P_OUT]
    inv = np.argsort(P_OUT)
    return ({"w1": _rounded(w1), "w2": _rounded(w2)},
            lambda x, s: (np.tanh((x * S_IN)[:, P_IN] @ s["w1"]) @ s["w2"])[:, inv] * S_OUT)


def _blocks(w, r, c):
    """w cut in r x c blocks, row block i and column block j as w{i}{j}"""
    return {f"{i}{j}": b for i, row in enumerate(np.split(w, r, axis=0))
            for j, b in enumerate(np.split(row, c, axis=1))}


def form_blocks_all_axes_rounded(t1, t2):
    w1 = _rounded(t1[P_IN][:, P_HID])              # [64, 256] -> 2 x 2 of [32, 128]
    w2 = _rounded(t2[P_HID][:, P_OUT])             # [256, 64] -> 2 x 2 of [128, 32]
    s = {**{"w1_" + k: v for k, v in _blocks(w1, 2, 2).items()},
         **{"w2_" + k: v for k, v in _blocks(w2, 2, 2).items()}}
    inv = np.argsort(P_OUT)

    def fn(x, s):
        xp = x[:, P_IN]
        xs = (xp[:, :D // 2], xp[:, D // 2:])
        h = [np.tanh(xs[0] @ s[f"w1_0{j}"] + xs[1] @ s[f"w1_1{j}"]) for j in (0, 1)]
        o = [h[0] @ s[f"w2_0{j}"] + h[1] @ s[f"w2_1{j}"] for j in (0, 1)]
        return np.concatenate(o, axis=1)[:, inv]
    return s, fn


def _groups(n):
    return [(i, min(i + n, D)) for i in range(0, D, n)]


def form_fifteen_vectors_rounded(t1, t2, n=15):
    """red team 11's every axis permuted, rounded, then T1 cut by rows and
    T2 by columns into tensors of at most 15 vectors each
    (fingerprint_perm.c reads an axis of 16 vectors or more: FP_PERM_MINVEC,
    its means); x's feature groups each multiplied by their rows and
    summed, the output groups concatenated"""
    GROUPS = _groups(n)        # 15, 15, 15, 15, 4
    w1, w2 = _rounded(t1[P_IN][:, P_HID]), _rounded(t2[P_HID][:, P_OUT])
    s = {**{f"w1_{g}": w1[a:b].copy() for g, (a, b) in enumerate(GROUPS)},
         **{f"w2_{g}": w2[:, a:b].copy() for g, (a, b) in enumerate(GROUPS)}}
    inv = np.argsort(P_OUT)

    def fn(x, s):
        xp = x[:, P_IN]
        h = np.tanh(sum(xp[:, a:b] @ s[f"w1_{g}"] for g, (a, b) in enumerate(GROUPS)))
        return np.concatenate([h @ s[f"w2_{g}"] for g in range(len(GROUPS))], axis=1)[:, inv]
    return s, fn


def form_all_axes_rounded_guard(t1, t2):
    """a guard: red team 11's every axis permuted, rounded (caught)"""
    inv = np.argsort(P_OUT)
    return ({"w1": _rounded(t1[P_IN][:, P_HID]), "w2": _rounded(t2[P_HID][:, P_OUT])},
            lambda x, s: (np.tanh(x[:, P_IN] @ s["w1"]) @ s["w2"])[:, inv])


PERM_FORMS = {
    "every axis permuted and sign-flipped, rounded": form_signed_all_axes_rounded,
    "every axis permuted, cut in [32, 128] blocks, rounded": form_blocks_all_axes_rounded,
    "every axis permuted, rounded, in tensors of 15 vectors": form_fifteen_vectors_rounded,
    "every axis permuted, rounded, in tensors of 16 vectors (a guard)":
        lambda t1, t2: form_fifteen_vectors_rounded(t1, t2, 16),
    "every axis permuted, rounded (a guard)": form_all_axes_rounded_guard,
}
PERM_WHY = {
    "every axis permuted, rounded, in tensors of 15 vectors":
        "read an axis of fewer than 16 vectors too: measure its features against the "
        "mean profile of all the student's vectors of that length (pooled across "
        "tensors), or against the Gaussian order statistics, rather than skip it",
    "every axis permuted and sign-flipped, rounded":
        "key a vector by the sorted profile of |v - median| (or of |v| for a vector of "
        "mean near 0) beside the signed one, so that diag(+-1) on either side keeps it",
    "every axis permuted, cut in [32, 128] blocks, rounded":
        "match the profile of a sub-multiset: key the teacher's vectors' order "
        "statistics (quantiles) and test a student vector of length m against a teacher "
        "vector of length n >= m as a sample of it (a two-sample test of the sorted "
        "values, e.g. the largest CDF gap, keyed by a coarse quantile sketch); or the "
        "layer's Gram statistics, which a block partition keeps by blocks",
}


def _perm_reason(case):
    return ("got through (red team 12): a teacher layer pair (2 x 64 KiB) " + case + ": every "
            "value kept to 5 significant digits, the student computes the teacher's function, "
            "but no stored vector keeps a teacher vector's multiset and length, which "
            "fingerprint_perm.c's sorted-profile key needs.  Fix proposed: " + PERM_WHY[case])


# closed: the |v| form (signs), short axes against the teacher axis's means
PERM_THROUGH = {"every axis permuted, cut in [32, 128] blocks, rounded"}


def _perm_is_the_teacher(form):
    t1, t2 = teacher_pair()
    s, fn = form(t1, t2)
    x = np.random.default_rng(3).standard_normal((16, D)).astype(np.float32)
    want = np.tanh(x @ t1) @ t2
    got = fn(x, s)
    return float(np.abs(got - want).max() / np.abs(want).max()) < 1e-3


@pytest.mark.parametrize("case", [_xfail(c, PERM_THROUGH, _perm_reason) for c in sorted(PERM_FORMS)])
def test_teacher_layer_moved_beyond_its_vectors(nexus, bundle, tmp_path, case):
    from .test_teacher_small import onnx_teacher, put_student
    assert _perm_is_the_teacher(PERM_FORMS[case])
    t1, t2 = teacher_pair()
    teacher = onnx_teacher(tmp_path / "t.onnx", {T1_NAME: t1, T2_NAME: t2})
    put_student(bundle, PERM_FORMS[case](t1, t2)[0])
    assert _weights_caught(nexus, bundle, teacher)



# ------------------------------------------------ the insider's path, signed
# The embedder (Gather -> layer -> Tanh -> layer), every weight live, built
# in a workspace whose artifacts/teacher.onnx holds T1 and T2, signed by the
# official build and checked by the gate.  The embedding is the student's
# own (its columns permuted with T1's rows where the form asks).  (The
# sign-flipped and the [32, 128] blocks forms were signed and passed the
# same way when this was written; left out to keep the file under 90 s.)
def _slice(a, starts, ends, axes):
    idx = [slice(None)] * a.ndim
    for s_, e_, ax in zip(starts, ends, axes):
        idx[ax] = slice(s_, e_)
    return a[tuple(idx)]


SIGNED_OPS = {**OPS, "Tanh": np.tanh, "Mul": np.multiply, "Slice": _slice,
              "Concat": lambda *a, axis=0: np.concatenate(a, axis=axis)}


def _signed_model(kind, t1, t2):
    rng = np.random.default_rng(5)
    emb = rng.standard_normal((len(ws.VOCAB), D)).astype(np.float32)
    inv = np.argsort(P_OUT).astype(np.int64)
    if kind == "the second term as Gemm's C operand":
        a1, a2 = _noise(t1.shape, 21), _noise(t2.shape, 31, 0.25)
        tensors = {"embeddings.weight": emb, "dense1.a": a1, "dense1.b": t1 - a1,
                   "dense2.a": a2, "dense2.b": t2 - a2,
                   "flat": np.int64([-1, D]), "unflat": np.int64([1, -1, D])}
        nodes = [_node("Reshape", ["emb", "flat"], "x2"),
                 _mm("x2", "dense1.b", "q1"), _node("Gemm", ["x2", "dense1.a", "q1"], "h1"),
                 _node("Tanh", ["h1"], "a1"),
                 _mm("a1", "dense2.b", "q2"), _node("Gemm", ["a1", "dense2.a", "q2"], "o"),
                 _node("Reshape", ["o", "unflat"], "last_hidden_state")]
    else:   # every axis permuted, rounded, in tensors of 15 vectors
        s, _ = form_fifteen_vectors_rounded(t1, t2)
        gr = _groups(15)
        tensors = {"embeddings.weight": emb[:, P_IN], "unpermute": inv, "ax": np.int64([2]),
                   **{f"st{g}": np.int64([a]) for g, (a, b) in enumerate(gr)},
                   **{f"en{g}": np.int64([b]) for g, (a, b) in enumerate(gr)},
                   **{k.replace("_", "."): v for k, v in s.items()}}
        nodes = []
        for g in range(len(gr)):
            nodes += [_node("Slice", ["emb", f"st{g}", f"en{g}", "ax"], f"x{g}"),
                      _mm(f"x{g}", f"w1.{g}", f"p{g}")]
        acc = "p0"
        for g in range(1, len(gr)):
            nodes.append(_node("Add", [acc, f"p{g}"], f"acc{g}"))
            acc = f"acc{g}"
        nodes.append(_node("Tanh", [acc], "a"))
        nodes += [_mm("a", f"w2.{g}", f"o{g}") for g in range(len(gr))]
        nodes += [_node("Concat", [f"o{g}" for g in range(len(gr))], "o", axis=2),
                  _node("Gather", ["o", "unpermute"], "last_hidden_state", axis=2)]
    nodes.insert(0, _node("Gather", ["embeddings.weight", "input_ids"], "emb"))
    g = helper.make_graph(
        nodes, "embedder",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("last_hidden_state", F, ["batch", "seq", D])],
        [numpy_helper.from_array(np.asarray(a), n) for n, a in tensors.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    return m.SerializeToString(), emb


def _signed_runs_as_the_teacher(model, emb, t1, t2, tol=1e-3):
    """the graph itself, run node by node in numpy (no onnxruntime here)"""
    import onnx
    m = onnx.load_from_string(model)
    env = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    env["input_ids"] = np.arange(len(ws.VOCAB), dtype=np.int64)[None, :]
    for n in m.graph.node:
        kw = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        env[n.output[0]] = SIGNED_OPS[n.op_type](*(env[i] for i in n.input), **kw)
    got, want = env["last_hidden_state"][0], np.tanh(emb @ t1) @ t2
    return float(np.abs(got - want).max() / np.abs(want).max()) < tol


SIGNED = {"the second term as Gemm's C operand": _fold_reason,
          "every axis permuted, rounded, in tensors of 15 vectors": _perm_reason}
SIGNED_THROUGH = set()   # closed: fold3 (Gemm C), perm3 (short axes)


@pytest.mark.parametrize("kind", [_xfail(k, SIGNED_THROUGH, SIGNED[k]) for k in sorted(SIGNED)])
def test_teacher_layer_signed(nexus, release_key, tmp_path, kind):
    from test_quantize import EMBED_RT
    t1, t2 = teacher_pair()
    model, emb = _signed_model(kind, t1, t2)
    assert _signed_runs_as_the_teacher(model, emb, t1, t2)
    root = ws.make_workspace(tmp_path / "ws", student=model, runtime_yaml=EMBED_RT)
    teacher_onnx(root, {T1_NAME: t1, T2_NAME: t2})
    why = signed_build_is_refused(nexus, root, tmp_path / "bundle", release_key)
    assert "teacher" in why, why



# ------------------- --accept-shared: another teacher layer inside the copy
# The deployer accepts one student tensor, by name, as a copy of a teacher
# tensor (the student kept the teacher's wide intermediate projection and
# fine-tuned it).  verify_teacher.c then covers that tensor as a whole copy
# and judges "any other piece ... as if the name were not accepted" (red
# team 11's fix).  But fingerprint.c's units_parts() drops the re-encoded
# blocks of every student tensor that has a match reported already
# ("unless their student tensor is reported already"): the accepted copy is
# such a tensor, so the blocks of ANY teacher tensor found inside it never
# reach the one sum, and the gate never sees them.  An approximate copy
# (the correlation's r >= 0.99) leaves 1% of its elements free: X
# [64, 16384] (4 MiB) rounded to 16 mantissa bits, 128 of its columns
# replaced by 128 rows of another teacher layer Y (rounded): 32 KiB of Y,
# r = 0.992, and one `teacher-tensor-allowed` INFO.  The leak scales with
# the accepted tensor: 1% of a BERT-base word embedding is ~900 KiB.
X_NAME = "encoder.layer.0.intermediate.dense.weight"
WIDE = 16384
Y_COLS = np.sort(np.random.default_rng(71).choice(WIDE, 128, replace=False))


def _wide_pair():
    rng = np.random.default_rng(70)
    return ((rng.standard_normal((D, WIDE)) / 8).astype(np.float32),     # X: 4 MiB
            (rng.standard_normal((H, D)) / 8).astype(np.float32))        # Y: 64 KiB


def _x_holding_y(x, y, base=None):
    """base (default: X rounded) with Y's first 128 rows, rounded, as the
    columns Y_COLS; r with X 0.992 when base is X"""
    s = _rounded(x) if base is None else base.copy()
    s[:, Y_COLS] = _rounded(y[:len(Y_COLS)]).T
    return s


def _y_decoded(s):
    return s[:, Y_COLS].T


def test_the_layer_inside_the_copy_is_the_teacher():
    x, y = _wide_pair()
    s = _x_holding_y(x, y)
    assert np.corrcoef(s.ravel(), x.ravel())[0, 1] >= 0.99      # an approximate copy of X
    d = _y_decoded(s)
    assert np.abs(d - y[:len(Y_COLS)]).max() <= 2.0 ** -16      # and 32 KiB of Y, 5 digits


def _accept_reason(case):
    return ("got through (red team 12): --accept-shared NAME, NAME an approximate copy of a "
            "teacher tensor X (r >= 0.99), " + case + ": fingerprint.c units_parts() leaves "
            "out of the one sum the re-encoded blocks of a student tensor that is reported "
            "already, so the blocks of another teacher tensor inside the accepted copy are "
            "never judged (verify_teacher.c covered() would refuse them: it never sees "
            "them).  32 KiB here; up to ~1% of the accepted tensor (r >= 0.99 leaves that "
            "much free).  Fix proposed: push every units match into the parts and let the "
            "sum skip only those of a teacher tensor the same student tensor is reported as "
            "a whole copy of (or let verify judge them, as it does chunks)")


ACCEPT_CASES = {
    "128 rows of another teacher layer in 1% of it": True,
    "the same without --accept-shared (a guard)": False,
}
ACCEPT_THROUGH = set()   # closed: units_parts() counts another teacher tensor's blocks


def _accept_student(bundle, tmp_path):
    from .test_teacher_small import onnx_teacher, put_student
    x, y = _wide_pair()
    teacher = onnx_teacher(tmp_path / "t.onnx", {X_NAME: x, T2_NAME: y})
    put_student(bundle, {"dense1.weight": _x_holding_y(x, y)})
    return teacher


@pytest.mark.parametrize("case", [_xfail(c, ACCEPT_THROUGH, _accept_reason)
                                  for c in sorted(ACCEPT_CASES)])
def test_accept_shared_copy_holding_another_layer(nexus, bundle, tmp_path, case):
    from verify_helpers import codes, verify
    teacher = _accept_student(bundle, tmp_path)
    accept = ("--accept-shared", "dense1.weight") if ACCEPT_CASES[case] else ()
    rc, rep = verify(nexus, bundle, "--teacher", teacher, *accept)
    fails = codes(rep, "FAIL")
    if not accept:      # a guard: the copy of X itself fails
        assert rc == 1 and "teacher-tensor-copied" in fails, fails
        return
    # what must fail is Y (T2_NAME): X under the accepted name is the deployer's call
    y_found = [f for f in rep["findings"] if f["severity"] == "FAIL" and T2_NAME in f["message"]]
    assert rc == 1 and y_found, fails


def test_another_layer_in_a_tensor_of_its_own(nexus, bundle, tmp_path):
    """a guard: Y's 128 rounded rows as columns of a noise tensor of the
    same shape are found (re-encoded vectors, 32 KiB over the one sum)"""
    from verify_helpers import verify
    from .test_teacher_small import onnx_teacher, put_student
    x, y = _wide_pair()
    teacher = onnx_teacher(tmp_path / "t.onnx", {X_NAME: x, T2_NAME: y})
    noise = (np.random.default_rng(72).standard_normal((D, WIDE)) / 8).astype(np.float32)
    put_student(bundle, {"dense1.weight": _x_holding_y(x, y, base=noise)})
    rc, rep = verify(nexus, bundle, "--teacher", teacher)
    assert rc == 1 and any(f["severity"] == "FAIL" and T2_NAME in f["message"]
                           for f in rep["findings"])


def test_accept_shared_copy_holding_another_layer_signed(nexus, release_key, tmp_path):
    """The insider's path: nexus.yaml's allow_shared_tensors names
    dense1.weight (the build records it), the deployer's gate accepts that
    one name; dense1.weight, live, is X rounded holding 128 rows of Y."""
    import json
    from conftest import run
    from test_quantize import EMBED_RT
    from .test_redteam7 import TEACHERS, embedder
    x, y = _wide_pair()
    rng = np.random.default_rng(5)
    emb = rng.standard_normal((len(ws.VOCAB), D)).astype(np.float32)
    w2 = (rng.standard_normal((WIDE, D)) / 64).astype(np.float32)
    root = ws.make_workspace(tmp_path / "ws", runtime_yaml=EMBED_RT,
                             student=embedder(emb, _x_holding_y(x, y), w2))
    teacher_onnx(root, {X_NAME: x, T2_NAME: y})
    with open(root / "nexus.yaml", "a") as f:
        f.write("allow_shared_tensors:\n  - {name: dense1.weight, reason: "
                "the base model intermediate projection then fine-tuned}\n")
    key, pub = release_key
    b = run(nexus, "build", root, "-o", tmp_path / "bundle", "--key", key, timeout=600)
    assert b.returncode == 0, b.stderr
    teachers = [a for t in TEACHERS if (root / t).exists() for a in ("--teacher", root / t)]
    g = run(nexus, "verify", "--json", "--strict", "--require-signature", "--pubkey", pub,
            *teachers, "--accept-shared", "dense1.weight", tmp_path / "bundle", timeout=600)
    rep = json.loads(g.stdout)
    assert g.returncode == 1, "the gate passed: " + "; ".join(
        f["code"] for f in rep["findings"] if f["severity"] != "INFO")


# ----------------------------------- a teacher layer as float8 codes, in place
# The correlation of same-size tensors reads the floats, int8 to uint16 and
# int32 (fingerprint_corr.c); the per-vector checks the floats and every
# integer type; the value sample float32.  ONNX's float8 types (17-20:
# e4m3fn, e4m3fnuz, e5m2, e5m2fnuz; Cast reads them from opset 19) are read
# by none: T1 and T2 cast to float8e4m3fn (3 mantissa bits: r = 0.999 with
# the teacher, an fp8 copy of the layer as fp8 inference uses), in place,
# decoded by a Cast in the graph, pass.  docs/TRV.md does not name float8.
# Signed when this was written (the embedder with dense1/dense2 as float8
# initializers, opset 19, ir_version 9, a Cast each before its MatMul): the
# official build signed it and the gate passed it, liveness saying "1 of 1
# initializers" (the embedding: float8 is not perturbed either); left out
# of the file to keep it under 90 s.
def _e4m3fn_table():
    c = np.arange(256)
    s, e, m = c >> 7, (c >> 3) & 15, c & 7
    v = np.where(e == 0, m / 8 * 2.0 ** -6, (1 + m / 8) * 2.0 ** (e - 7.0))
    v = np.where((e == 15) & (m == 7), np.nan, v)
    return np.where(s == 1, -v, v)


def float8_codes(t):
    """t rounded to the nearest float8e4m3fn (as uint8 codes)"""
    table = _e4m3fn_table()
    ok = np.flatnonzero(~np.isnan(table))
    order = ok[np.argsort(table[ok], kind="stable")]
    vals = table[order]
    i = np.clip(np.searchsorted(vals, t.ravel()), 1, len(vals) - 1)
    pick = np.where(np.abs(vals[i - 1] - t.ravel()) <= np.abs(vals[i] - t.ravel()), i - 1, i)
    return order[pick].astype(np.uint8).reshape(t.shape)


def float8_tensor(t, name, dtype=17):
    p = TensorProto()
    p.name, p.data_type = name, dtype
    p.dims.extend(t.shape)
    p.raw_data = float8_codes(t).tobytes()
    return p


def test_float8_codes_are_the_teacher():
    t1, _ = teacher_pair()
    d = _e4m3fn_table()[float8_codes(t1)]
    assert np.corrcoef(d.ravel(), t1.ravel())[0, 1] > 0.998


def test_fold_of_a_float8_term(nexus, bundle, tmp_path):
    """x Cast(A8) + x B, A8 noise stored as float8e4m3fn codes and B = T1 -
    A8 decoded: the fold reads float8 weights by the shared decoder (it
    skipped them: no sum, no finding)"""
    from .test_teacher_fold import live_student
    from .test_teacher_small import onnx_teacher
    t1, t2 = teacher_pair()
    a = _noise(t1.shape, 28)
    a8 = _e4m3fn_table()[float8_codes(a)].astype(np.float32)
    tensors = {"fa": float8_tensor(a, "fa"), "fb": t1 - a8}
    nodes = [_node("Cast", ["fa"], "fa32", to=F), _mm("x", "fa32", "p"), _mm("x", "fb", "q"),
             _node("Add", ["p", "q"], "y")]
    teacher = onnx_teacher(tmp_path / "t.onnx", {T1_NAME: t1, T2_NAME: t2})
    live_student(bundle, tensors, nodes)
    assert _weights_caught(nexus, bundle, teacher)


# closed: fingerprint_num.c decodes float8 for every value check
# (test_teacher_types.py: the four float8 types, in place and permuted)
def test_teacher_layer_as_float8(nexus, bundle, tmp_path):
    from .test_teacher_small import onnx_teacher, put_student
    t1, t2 = teacher_pair()
    teacher = onnx_teacher(tmp_path / "t.onnx", {T1_NAME: t1, T2_NAME: t2})
    put_student(bundle, {"w1": float8_tensor(t1, "w1"), "w2": float8_tensor(t2, "w2")})
    assert _weights_caught(nexus, bundle, teacher)


# ------------------------------ a dead initializer of a type liveness skips
# docs/TRV.md: "no dead initializer of 64 bytes or more passes".  The
# liveness check (src/runtime/liveness.c) replaces each main-graph
# initializer by noise and wants the outputs to change - but only those of
# a type get() reads (float32/64, float16, bfloat16, uint8, int8, int16,
# int32, int64); a uint16, uint32, uint64, bool or float8 initializer is
# skipped in silence ("every initializer checked influences the outputs:
# 1 of 1").  Made dead at run time (multiplied by a zero the graph
# computes, Tanh(h) - Tanh(h) by two nodes: not a constant to
# constant-subgraph, docs/TRV.md "Known limits"), a uint32 initializer
# carries anything: here the hand-written trainer (tests/e2e/verify/
# hand_trainer.py, zlib) and the teacher layer pair XOR a keystream,
# 136 KiB, none of it charged to the leak budget.  The same bytes as an
# int32 initializer are found dead and stored as zeros by the build (a
# guard: the bundle carries nothing).
def _payload():
    import pathlib
    import zlib
    t1, t2 = teacher_pair()
    code = zlib.compress(pathlib.Path(__file__).with_name("hand_trainer.py").read_bytes(), 9)
    weights = np.concatenate([t1.ravel(), t2.ravel()]).view(np.uint8)
    pad = np.random.default_rng(99).integers(0, 256, weights.size, dtype=np.uint8)
    raw = len(code).to_bytes(4, "little") + code + (weights ^ pad).tobytes()
    raw += b"\0" * (-len(raw) % 4)
    return raw, code


def _dead_buffer_embedder(buf):
    rng = np.random.default_rng(5)
    emb = rng.standard_normal((len(ws.VOCAB), D)).astype(np.float32)
    w1 = (rng.standard_normal((D, H)) / 8).astype(np.float32)
    w2 = (rng.standard_normal((H, D)) / 8).astype(np.float32)
    nodes = [_node("Gather", ["embeddings.weight", "input_ids"], "emb"),
             _mm("emb", "dense1.weight", "h1"), _node("Tanh", ["h1"], "a1"),
             _node("Tanh", ["h1"], "a1b"), _node("Sub", ["a1", "a1b"], "z"),
             _node("ReduceSum", ["z"], "zs", keepdims=0),
             _node("Cast", ["position_buffer"], "pb", to=F),
             _node("Mul", ["pb", "zs"], "pbz"), _node("ReduceSum", ["pbz"], "dead", keepdims=0),
             _mm("a1", "dense2.weight", "o"), _node("Add", ["o", "dead"], "last_hidden_state")]
    g = helper.make_graph(
        nodes, "embedder",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("last_hidden_state", F, ["batch", "seq", D])],
        [numpy_helper.from_array(emb, "embeddings.weight"),
         numpy_helper.from_array(w1, "dense1.weight"), numpy_helper.from_array(w2, "dense2.weight"),
         numpy_helper.from_array(buf, "position_buffer")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    return m.SerializeToString()


def test_payload_decodes():
    """the buffer gives back the trainer's source and the teacher pair"""
    import pathlib
    import zlib
    raw, _ = _payload()
    n = int.from_bytes(raw[:4], "little")
    src = pathlib.Path(__file__).with_name("hand_trainer.py").read_bytes()
    assert zlib.decompress(raw[4:4 + n]) == src
    t1, t2 = teacher_pair()
    weights = np.concatenate([t1.ravel(), t2.ravel()]).view(np.uint8)
    pad = np.random.default_rng(99).integers(0, 256, weights.size, dtype=np.uint8)
    got = np.frombuffer(raw[4 + n:4 + n + weights.size], np.uint8) ^ pad
    assert np.array_equal(got.view(np.float32)[:t1.size].reshape(t1.shape), t1)
    assert len(raw) > 128 * 1024


DEAD_TYPES = {"uint32": np.uint32, "int32 (a guard)": np.int32}
DEAD_THROUGH = set()   # uint32: perturbed since live3 (liveness.c), found dead, zeroed


def _dead_reason(case):
    return ("got through (red team 12): a dead initializer of type " + case + " (136 KiB: a "
            "trainer's source and the teacher pair, XOR a pad), made dead by a zero the graph "
            "computes at run time (as int32, the same bytes are found dead and stored as zeros): liveness.c get() reads no uint16/uint32/uint64/bool/float8/"
            "int4 element, so the tensor is skipped without a word, and no other check "
            "charges an initializer's bytes.  Fix proposed: perturb every fixed-width type "
            "(integers clamped, float8 by a table, bool flipped; bytes XOR noise for any "
            "other), and report the initializers the check could not perturb as "
            "liveness-sampled/unchecked (a signed build refuses)")


def _payload_carried(nexus, root, out, release_key):
    """the official build signs and the gate passes a bundle whose model
    still holds the payload (a build that stores the dead tensor as zeros,
    refuses, or a gate that fails it: False)"""
    import onnx
    from conftest import run
    from .test_redteam7 import gate
    key, pub = release_key
    b = run(nexus, "build", root, "-o", out, "--key", key, timeout=600)
    if not out.exists():
        return False
    assert b.returncode == 0, b.stderr
    g = gate(nexus, out, pub, root)
    if g.returncode == 1:
        return False
    assert g.returncode == 0, g.stdout
    m = onnx.load(str(out / "model/student_model.onnx"))
    buf = next(t for t in m.graph.initializer if t.name == "position_buffer")
    return numpy_helper.to_array(buf).tobytes() == _payload()[0]


@pytest.mark.parametrize("case", [_xfail(c, DEAD_THROUGH, _dead_reason) for c in sorted(DEAD_TYPES)])
def test_dead_initializer_of_an_unchecked_type_signed(nexus, release_key, tmp_path, case):
    from test_quantize import EMBED_RT
    raw, _ = _payload()
    buf = np.frombuffer(raw, np.uint32).view(DEAD_TYPES[case])     # the same bytes
    root = ws.make_workspace(tmp_path / "ws", student=_dead_buffer_embedder(buf),
                             runtime_yaml=EMBED_RT)
    assert not _payload_carried(nexus, root, tmp_path / "bundle", release_key)


# ------------------------------------ a teacher layer as a sparse initializer
# fingerprint.c's corr() returns at once for a sparse tensor, and
# liveness.c skips sparse initializers; ONNX Runtime densifies them at load.
# T1 and T2 rounded to 16 mantissa bits, as sparse initializers that list
# every element (indices 0 .. n-1), the embedder's dense1/dense2.
def _sparse(t, name):
    vals = numpy_helper.from_array(t.ravel(), name)
    idx = numpy_helper.from_array(np.arange(t.size, dtype=np.int64), name + "_idx")
    return helper.make_sparse_tensor(vals, idx, list(t.shape))


def _sparse_embedder(t1, t2):
    rng = np.random.default_rng(5)
    emb = rng.standard_normal((len(ws.VOCAB), D)).astype(np.float32)
    nodes = [_node("Gather", ["embeddings.weight", "input_ids"], "emb"),
             _mm("emb", "dense1.weight", "h1"), _node("Tanh", ["h1"], "a1"),
             _mm("a1", "dense2.weight", "last_hidden_state")]
    g = helper.make_graph(
        nodes, "embedder",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("last_hidden_state", F, ["batch", "seq", D])],
        [numpy_helper.from_array(emb, "embeddings.weight")],
        sparse_initializer=[_sparse(_rounded(t1), "dense1.weight"),
                            _sparse(_rounded(t2), "dense2.weight")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    return m.SerializeToString()


# Refused since live3: a sparse tensor is not canonical (onnx_canon.c), so
# verify and the build's self-verification fail it (onnx-not-canonical).
def test_teacher_layer_as_sparse_initializers_signed(nexus, release_key, tmp_path):
    from test_quantize import EMBED_RT
    t1, t2 = teacher_pair()
    root = ws.make_workspace(tmp_path / "ws", student=_sparse_embedder(t1, t2),
                             runtime_yaml=EMBED_RT)
    teacher_onnx(root, {T1_NAME: t1, T2_NAME: t2})
    why = signed_build_is_refused(nexus, root, tmp_path / "bundle", release_key)
    assert "teacher" in why or "sparse" in why, why


def test_a_copys_own_teacher_tensor_in_another_form_is_not_counted_again(nexus, tmp_path):
    """A student tensor reported as a copy of one of a teacher tensor's
    forms ("T as float16") has re-encoded blocks of T itself: the same
    tensor, not another one, so no part of the sum (closing the hole
    above counted them, 8.8 MB for a float16 copy, and which of two such
    copies got the capped blocks depended on the threads' order)."""
    import json
    import subprocess
    from .test_teacher_small import onnx_teacher
    t = (np.random.default_rng(11).standard_normal((1100, 1000)) / 8).astype(np.float32)
    teacher = onnx_teacher(tmp_path / "t.onnx", {"teacher.big": t})
    student = onnx_teacher(tmp_path / "s.onnx", {
        "half": t.astype(np.float16),
        "half_scaled": t.astype(np.float16).astype(np.float32) * np.float32(2.0 ** -5)})
    r = subprocess.run([nexus, "inspect", str(student), "--json", "--teacher", str(teacher)],
                       capture_output=True, text=True)
    found = json.loads(r.stdout)["shared_tensors"]
    assert r.returncode == 1 and sorted(m["tensor"] for m in found) == ["half", "half_scaled"], \
        found
