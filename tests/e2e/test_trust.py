"""Issue #22's remaining hole: a teacher tensor re-encoded losslessly and
stored as student initializers (docs/TRV.md, "Re-encoded teacher tensors").

The last red team got a 32 KiB teacher tensor past
`verify --strict --require-signature --teacher` widened to float64,
reversed, with 32-byte groups permuted, interleaved with zeros, split into
int16 bit planes - each kept "used" by a product with zero.  One family per
class of defence, several encodings each:

- DEAD: the tensor is stored as it is wanted offline and kept in the graph
  by a product with a zero that is not a constant (Sub(x, x), a constant
  zero on an activation, a 1e-30 factor): liveness (dead-initializer),
  without any teacher given;
- CONSTANT: the tensor is decoded in the graph from pieces that are all
  constants (an additive split summed, bit planes reassembled, a Gather
  permutation, a product with a constant zero) and the result used for
  real: constant-subgraph, without any teacher given;
- VALUES: the tensor is used as a live weight in another order or width
  (reversed, permuted, interleaved, widened, scaled by a power of two):
  the value fingerprint (teacher-values-copied) with --teacher.

Every case is built by `nexus build --key` from a workspace an insider
controls; the build must refuse it (nothing published), and a bundle the
gate would refuse is never signed.  The clean workspace, examples/ and a
transformer-shaped student exported by torch must still PASS.
"""
import json
import pathlib

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import workspace as ws
from conftest import ROOT, run
from test_insider import gate, student_with

TEACHER_SHAPE = (8, 1024)          # 32 KiB of float32, the red team's size
DEFENCES = {"dead-initializer", "constant-subgraph", "teacher-values-copied",
            "teacher-tensor-copied"}


def teacher_layer():
    return np.random.default_rng(9).standard_normal(TEACHER_SHAPE, dtype=np.float32)


def write_teacher(root, layer):
    t = helper.make_model(helper.make_graph(
        [helper.make_node("MatMul", ["x", "layer"], ["y"])], "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, TEACHER_SHAPE[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, TEACHER_SHAPE[1]])],
        [numpy_helper.from_array(layer, "layer")]),
        opset_imports=[helper.make_opsetid("", 13)])
    (root / "artifacts/teacher.onnx").write_bytes(t.SerializeToString())


def i64(name, values):
    return numpy_helper.from_array(np.array(values, np.int64), name)


def as_matrix(src, tag):
    """Nodes turning stored initializer `src` into a float [8, -1] matrix
    named tag + '_m' (Cast and Reshape: conversion steps an exporter may
    leave)."""
    return ([helper.make_node("Cast", [src], [tag + "_f"], to=TensorProto.FLOAT),
             helper.make_node("Reshape", [tag + "_f", "shape_8x"], [tag + "_m"])],
            [i64("shape_8x", [8, -1])])


def used_for_real(mat, tag):
    """pooled = pooled0 + mean(pooled0 @ mat) * 0.5: mat moves the logits."""
    return [helper.make_node("MatMul", ["pooled0", mat], [tag + "_wide"]),
            helper.make_node("ReduceMean", [tag + "_wide"], [tag + "_r"], axes=[1], keepdims=1),
            helper.make_node("Mul", [tag + "_r", "half"], [tag + "_h"])]


def keep_alive(mat, tag, zero):
    """An output that depends on mat in form only: mean(pooled0 @ mat) times
    a zero (zero: 'sub' = Sub(x, x), 'const' = a constant 0, 'tiny' = 1e-30)."""
    nodes = [helper.make_node("MatMul", ["pooled0", mat], [tag + "_wide"]),
             helper.make_node("ReduceMean", [tag + "_wide"], [tag + "_r"], axes=[1], keepdims=1)]
    inits = []
    if zero == "sub":
        nodes.append(helper.make_node("Sub", [tag + "_r", tag + "_r"], [tag + "_z"]))
        nodes.append(helper.make_node("Mul", [tag + "_r", tag + "_z"], [tag + "_h"]))
    else:
        k = {"const": 0.0, "tiny": 1e-30}[zero]
        inits.append(numpy_helper.from_array(np.array([k], np.float32), tag + "_k"))
        nodes.append(helper.make_node("Mul", [tag + "_r", tag + "_k"], [tag + "_h"]))
    return nodes, inits


def combine(parts):
    """pooled = pooled0 + sum of the parts' [batch, 1] contributions."""
    nodes, cur = [], "pooled0"
    for i, p in enumerate(parts):
        out = "pooled" if i == len(parts) - 1 else f"acc{i}"
        nodes.append(helper.make_node("Add", [cur, p], [out]))
        cur = out
    return nodes


def build_case(root, stored, decode, zero=None, teacher=False):
    """stored: {name: array} initializers; decode(names) -> (nodes, inits,
    [matrix values]) turning them into float matrices [8, -1]; each matrix
    is used for real (zero None) or kept alive by `zero`.  teacher: the
    workspace's teacher.onnx is the layer (the DEAD and CONSTANT families
    leave the workspace's own: their checks need none)."""
    if teacher:
        write_teacher(root, teacher_layer())
    nodes, inits, mats = decode(stored)
    parts = []
    for i, m in enumerate(mats):
        n, extra = (used_for_real(m, f"u{i}"), []) if zero is None else keep_alive(m, f"u{i}", zero)
        nodes += n
        inits += extra
        parts.append(f"u{i}_h")
    nodes += combine(parts)
    inits.append(numpy_helper.from_array(np.array([0.5], np.float32), "half"))
    seen, uniq = set(), []
    for t in [numpy_helper.from_array(v, k) for k, v in stored.items()] + inits:
        if t.name not in seen:
            seen.add(t.name)
            uniq.append(t)
    student_with(root, extra_inits=uniq, extra_nodes=nodes)


def each_as_matrix(stored):
    nodes, inits, mats = [], [], []
    for name in stored:
        n, i = as_matrix(name, name)
        nodes += n
        inits += i
        mats.append(name + "_m")
    return nodes, inits, mats


def plain(layer):
    return {"w": layer}


def f64(layer):
    return {"w": layer.astype(np.float64)}


def reversed_(layer):
    return {"w": layer.reshape(-1)[::-1].reshape(TEACHER_SHAPE).copy()}


def permuted(layer):
    p = np.random.default_rng(3).permutation(layer.size)
    return {"w": layer.reshape(-1)[p].reshape(TEACHER_SHAPE).copy()}


def groups32(layer):
    g = layer.reshape(-1, 8)
    return {"w": g[np.random.default_rng(4).permutation(len(g))].reshape(TEACHER_SHAPE).copy()}


def interleaved(layer):
    out = np.zeros((TEACHER_SHAPE[0], 2 * TEACHER_SHAPE[1]), np.float32)
    out[:, ::2] = layer
    return {"w": out}


def doubled(layer):
    return {"w": layer * np.float32(2.0)}


def as_f16(layer):
    return {"w": layer.astype(np.float16)}


def bit_planes(layer):
    bits = layer.view(np.uint32).reshape(-1)
    return {"hi": (bits >> 16).astype(np.uint16).view(np.int16).reshape(8, -1),
            "lo": (bits & 0xFFFF).astype(np.uint16).view(np.int16).reshape(8, -1)}


def xor_pad(layer):
    pad = np.random.default_rng(7).integers(0, 2 ** 32, layer.size, dtype=np.uint32)
    return {"pad": pad.view(np.int32).reshape(8, -1),
            "ct": (layer.view(np.uint32).reshape(-1) ^ pad).view(np.int32).reshape(8, -1)}


def additive(layer):
    a = np.random.default_rng(8).standard_normal(TEACHER_SHAPE, dtype=np.float32)
    return {"a": a, "b": layer - a}


def low_bit_flipped(layer):
    p = permuted(layer)["w"]
    return {"w": (p.view(np.uint32) ^ np.uint32(1)).view(np.float32)}


def pieces(layer, n=8):
    p = permuted(layer)["w"].reshape(-1)
    return {f"w{i}": c.reshape(8, -1).copy() for i, c in enumerate(np.split(p, n))}


def small_pieces(layer):
    """64 pieces of 512 bytes: each under the fingerprint's 4 KiB."""
    return pieces(layer, 64)


def launder(name, tag):
    """name + Sub(x, x): the same values, no longer a constant."""
    return [helper.make_node("ReduceMean", ["pooled0"], [tag + "_x"], axes=[0, 1], keepdims=0),
            helper.make_node("Sub", [tag + "_x", tag + "_x"], [tag + "_0"]),
            helper.make_node("Add", [name, tag + "_0"], [tag + "_l"])]


def dec_tripwire(stored):
    """w used through sqrt(-|w - copy|) x 0: any change of w (or of the
    copy) turns the output into NaN, so both look influential."""
    nodes = launder("w", "tw") + [
        helper.make_node("Sub", ["tw_l", "w_copy"], ["tw_d"]),
        helper.make_node("Abs", ["tw_d"], ["tw_a"]),
        helper.make_node("Neg", ["tw_a"], ["tw_n"]),
        helper.make_node("Sqrt", ["tw_n"], ["tw_s"]),
        helper.make_node("Reshape", ["tw_s", "shape_8x"], ["w_m"])]
    return nodes, [i64("shape_8x", [8, -1])], ["w_m"]


def with_copy(layer):
    w = permuted(layer)["w"]
    return {"w": w, "w_copy": w.copy()}


def dec_subgraph(stored):
    """w kept inside the else branch of an If on a condition the texts
    never meet: an initializer of a subgraph."""
    w = numpy_helper.from_array(stored.pop("w"), "w_inner")
    branch = lambda name, nodes, inits: helper.make_graph(  # noqa: E731
        nodes, name, [], [helper.make_tensor_value_info(name + "_o", TensorProto.FLOAT, None)],
        inits)
    then_g = branch("then", [helper.make_node("Identity", ["w_inner"], ["then_o"])], [w])
    else_g = branch("else", [helper.make_node("Identity", ["zeros8"], ["else_o"])], [])
    nodes = [helper.make_node("ReduceMax", ["input_ids"], ["sg_max"], keepdims=0),
             helper.make_node("Greater", ["sg_max", "sg_big"], ["sg_c"]),
             helper.make_node("If", ["sg_c"], ["sg_w"], then_branch=then_g, else_branch=else_g),
             helper.make_node("Reshape", ["sg_w", "shape_8x"], ["w_m"])]
    return nodes, [i64("sg_big", 10 ** 9), i64("shape_8x", [8, -1]),
                   numpy_helper.from_array(np.zeros((8, 8), np.float32), "zeros8")], ["w_m"]


def case_dead(encode, zero):
    return lambda root: build_case(root, encode(teacher_layer()), each_as_matrix, zero)


def case_values(encode):
    return lambda root: build_case(root, encode(teacher_layer()), each_as_matrix, None, True)


# --- in-graph decoders: every input a constant -----------------------------
def dec_additive(stored):
    return ([helper.make_node("Add", ["a", "b"], ["sum"])], [], ["sum"])


def dec_gather(stored):
    return ([helper.make_node("Reshape", ["w", "flat"], ["w_flat"]),
             helper.make_node("Gather", ["w_flat", "inv"], ["w_g"], axis=0),
             helper.make_node("Reshape", ["w_g", "shape_8x"], ["w_m"])],
            [i64("flat", [-1]), i64("shape_8x", [8, -1]),
             i64("inv", np.argsort(np.random.default_rng(3).permutation(8192)))], ["w_m"])


def dec_planes(stored):
    """(hi << 16) + lo, computed as int32 from the two planes."""
    return ([helper.make_node("Cast", ["hi"], ["hi32"], to=TensorProto.INT32),
             helper.make_node("Cast", ["lo"], ["lo32"], to=TensorProto.INT32),
             helper.make_node("Mul", ["hi32", "k65536"], ["hi_s"]),
             helper.make_node("Add", ["hi_s", "lo32"], ["bits"]),
             helper.make_node("Cast", ["bits"], ["bits_f"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["bits_f", "tiny_scale"], ["w_m"])],
            [numpy_helper.from_array(np.array(65536, np.int32), "k65536"),
             numpy_helper.from_array(np.array(1e-9, np.float32), "tiny_scale")], ["w_m"])


def dec_times_zero(stored):
    return ([helper.make_node("Mul", ["w", "zero"], ["w_m"])],
            [numpy_helper.from_array(np.array(0.0, np.float32), "zero")], ["w_m"])


def dec_concat(stored):
    return ([helper.make_node("Concat", ["a", "b"], ["w_m"], axis=1)], [], ["w_m"])


def halves(layer):
    return {"a": layer[:, :512].copy(), "b": layer[:, 512:].copy()}


CASES = {
    "dead": {
        "float64, times Sub(x, x)": case_dead(f64, "sub"),
        "reversed, times a constant zero": case_dead(reversed_, "const"),
        "32-byte groups permuted, times 1e-30": case_dead(groups32, "tiny"),
        "interleaved with zeros, times Sub(x, x)": case_dead(interleaved, "sub"),
        "int16 bit planes, times a constant zero": case_dead(bit_planes, "const"),
        "XOR one-time pad in two tensors, times Sub(x, x)": case_dead(xor_pad, "sub"),
        "additive split, times 1e-30": case_dead(additive, "tiny"),
        "plain copy, times Sub(x, x)": case_dead(plain, "sub"),
        "64 pieces of 512 bytes, times Sub(x, x)": case_dead(small_pieces, "sub"),
        "NaN tripwire against a copy": lambda r: build_case(
            r, with_copy(teacher_layer()), dec_tripwire, "const"),
        "in an If branch never taken": lambda r: build_case(
            r, permuted(teacher_layer()), dec_subgraph),
    },
    "constant": {
        "additive split summed in the graph": lambda r: build_case(
            r, additive(teacher_layer()), dec_additive),
        "permutation undone by Gather": lambda r: build_case(
            r, permuted(teacher_layer()), dec_gather),
        "bit planes reassembled": lambda r: build_case(r, bit_planes(teacher_layer()), dec_planes),
        "tensor times a constant zero": lambda r: build_case(
            r, plain(teacher_layer()), dec_times_zero),
        "halves concatenated": lambda r: build_case(r, halves(teacher_layer()), dec_concat),
        "additive split, one half laundered through Sub(x, x)": lambda r: build_case(
            r, additive(teacher_layer()), lambda st: dec_laundered_sum(st)),
    },
    "values": {
        "widened to float64": case_values(f64),
        "elements reversed": case_values(reversed_),
        "elements permuted": case_values(permuted),
        "32-byte groups permuted": case_values(groups32),
        "interleaved with zeros": case_values(interleaved),
        "scaled by 2": case_values(doubled),
        "cast to float16": case_values(as_f16),
        "permuted, lowest bit flipped": case_values(low_bit_flipped),
        "permuted, in 8 tensors": case_values(pieces),
    },
}


def findings(rep, sev="FAIL"):
    return {f["code"] for f in rep["findings"] if f["severity"] == sev}


@pytest.mark.parametrize("cls,case", [(c, k) for c, v in CASES.items() for k in v])
def test_reencoded_teacher_is_never_signed(nexus, release_key, tmp_path, cls, case):  # noqa: F811
    key, pub = release_key
    root = ws.make_workspace(tmp_path / "ws")
    CASES[cls][case](root)
    out = tmp_path / "bundle"
    b = run(nexus, "build", root, "-o", out, "--key", key, "--json", timeout=300)
    assert not out.exists(), f"{cls}/{case}: the build signed it:\n{b.stderr[-2000:]}"
    assert b.returncode != 0
    want = {"dead": "dead-initializer", "constant": "constant-subgraph",
            "values": "teacher-values-copied"}[cls]
    text = b.stdout + b.stderr
    if "If branch" in case:
        want = "liveness-subgraph"
    assert want in text or (cls == "values" and "teacher-tensor-copied" in text) or (
        cls == "values" and "is identical to" in text), text[-3000:]


def test_dead_initializer_fails_verify_without_a_teacher(nexus, tmp_path):
    """The liveness check needs no teacher: a built bundle whose model is
    swapped for one with a dead initializer FAILs on its own."""
    root = ws.make_workspace(tmp_path / "ws")
    out = tmp_path / "b"
    assert run(nexus, "build", root, "-o", out, timeout=300).returncode == 0
    rep = json.loads(run(nexus, "verify", "--json", out).stdout)
    assert "dead-initializer" not in findings(rep)
    assert "liveness-checked" in findings(rep, "INFO")


def test_float16_weight_behind_a_cast_is_live(nexus, tmp_path):
    """A weight stored in float16 and Cast where it is used (a conversion
    ONNX Runtime folds at load) is replaced before folding: it is live."""
    root = ws.make_workspace(tmp_path / "ws")
    w = np.random.default_rng(13).standard_normal((8, 512)).astype(np.float16)
    build_case(root, {"w16": w}, each_as_matrix)
    out = tmp_path / "b"
    r = run(nexus, "build", root, "-o", out, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    lv = run(ROOT / "build/libexec/nexus/bin/nexus_cli", "liveness", "--bundle", out)
    assert '"initializer":"w16","verdict":"live"' in lv.stdout, lv.stdout


def test_dead_tensor_of_zeros_is_not_a_finding(nexus, tmp_path):
    """A parameter the outputs cannot see (a key bias before softmax) is
    dead, but all its elements equal carries nothing: it passes."""
    root = ws.make_workspace(tmp_path / "ws")
    build_case(root, {"kb": np.zeros((8, 256), np.float32)}, each_as_matrix, "sub")
    out = tmp_path / "b"
    r = run(nexus, "build", root, "-o", out, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    lv = run(ROOT / "build/libexec/nexus/bin/nexus_cli", "liveness", "--bundle", out)
    assert '"verdict":"dead-empty"' in lv.stdout, lv.stdout


# --- no false alarms ---------------------------------------------------------
def _liveness_numbers(rep):
    return [f["message"] for f in rep["findings"] if f["code"].startswith("liveness-")]


def test_clean_workspace_passes_every_new_check(nexus, release_key, tmp_path):  # noqa: F811
    key, pub = release_key
    root = ws.make_workspace(tmp_path / "ws")
    out = tmp_path / "bundle"
    b = run(nexus, "build", root, "-o", out, "--key", key, timeout=300)
    assert b.returncode == 0, b.stderr
    g = gate(nexus, out, pub, root)
    rep = json.loads(g.stdout)
    assert g.returncode == 0 and not findings(rep) & DEFENCES, rep["findings"]
    print("\nclean workspace:", _liveness_numbers(rep))


def test_example_passes_every_new_check(nexus, tmp_path):
    out = tmp_path / "b"
    r = run(nexus, "build", ROOT / "examples" / "spam-distill", "-o", out, timeout=300)
    assert r.returncode == 0, r.stderr
    teachers = [a for t in ("artifacts/teacher.onnx",)
                if (ROOT / "examples/spam-distill" / t).exists()
                for a in ("--teacher", ROOT / "examples/spam-distill" / t)]
    rep = json.loads(run(nexus, "verify", "--json", *teachers, out).stdout)
    assert not findings(rep) & DEFENCES, rep["findings"]
    assert "liveness-checked" in findings(rep, "INFO"), rep["findings"]
    print("\nexamples/spam-distill:", _liveness_numbers(rep))


def _torch_student(path, teacher_path, vocab, hidden=64, layers=2, heads=4, seq=32):
    """A BERT-shaped student (word, position and token type embeddings,
    LayerNorm, self-attention, GELU feed-forward, pooler, classifier) and a
    teacher of its own, both exported by torch.onnx.export as a workspace
    would."""
    import torch

    torch.manual_seed(0)

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.att = torch.nn.MultiheadAttention(hidden, heads, batch_first=True)
            self.ln1 = torch.nn.LayerNorm(hidden)
            self.ff = torch.nn.Sequential(torch.nn.Linear(hidden, 4 * hidden), torch.nn.GELU(),
                                          torch.nn.Linear(4 * hidden, hidden))
            self.ln2 = torch.nn.LayerNorm(hidden)

        def forward(self, x, pad):
            a, _ = self.att(x, x, x, key_padding_mask=pad, need_weights=False)
            x = self.ln1(x + a)
            return self.ln2(x + self.ff(x))

    class Student(torch.nn.Module):
        def __init__(self, width=hidden):
            super().__init__()
            self.word = torch.nn.Embedding(vocab, hidden)
            self.pos = torch.nn.Embedding(seq, hidden)
            self.typ = torch.nn.Embedding(2, hidden)
            self.ln = torch.nn.LayerNorm(hidden)
            self.blocks = torch.nn.ModuleList([Block() for _ in range(layers)])
            self.pool = torch.nn.Linear(hidden, hidden)
            self.cls = torch.nn.Linear(hidden, 2)

        def forward(self, input_ids, attention_mask):
            n = input_ids.shape[1]
            pos = torch.arange(n).unsqueeze(0)
            x = self.ln(self.word(input_ids) + self.pos(pos) +
                        self.typ(torch.zeros_like(input_ids)))
            pad = attention_mask == 0
            for b in self.blocks:
                x = b(x, pad)
            return self.cls(torch.tanh(self.pool(x[:, 0])))

    def export(model, p):
        model.eval()
        ids = torch.ones((1, 8), dtype=torch.long)
        mask = torch.ones((1, 8), dtype=torch.long)
        torch.onnx.export(model, (ids, mask), str(p), input_names=["input_ids", "attention_mask"],
                          output_names=["logits"], opset_version=14,
                          dynamic_axes={"input_ids": {0: "batch", 1: "seq"},
                                        "attention_mask": {0: "batch", 1: "seq"},
                                        "logits": {0: "batch"}})

    export(Student(), path)
    export(Student(), teacher_path)


@pytest.mark.parametrize("layers", [1, 2])
def test_transformer_shaped_student_passes(nexus, tmp_path, layers):
    root = ws.make_workspace(tmp_path / "ws")
    _torch_student(root / "artifacts/student.onnx", root / "artifacts/teacher.onnx",
                   len(ws.VOCAB), layers=layers)
    out = tmp_path / "b"
    r = run(nexus, "build", root, "-o", out, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads(run(nexus, "verify", "--json", "--teacher", root / "artifacts/teacher.onnx",
                         out, timeout=600).stdout)
    assert not findings(rep) & DEFENCES, [f for f in rep["findings"] if f["code"] in DEFENCES]
    assert "liveness-checked" in findings(rep, "INFO"), rep["findings"]
    lv = run(ROOT / "build/libexec/nexus/bin/nexus_cli", "liveness", "--bundle", out)
    changes = [json.loads(ln)["change"] for ln in lv.stdout.splitlines() if '"verdict"' in ln]
    print(f"\ntransformer student, {layers} layer(s): {len(changes)} initializers, "
          f"smallest relative change {min(changes):.3g}")
    assert len(changes) >= 6 + 5 * (layers - 1) and min(changes) > 1e-4   # threshold 1e-6


# --- the red team's documented limits (docs/TRV.md, Known limits) -----------
# What passes on purpose: each case is a tensor that is live - it moves the
# outputs - and whose values are not the teacher's.  These tests pin the
# limit down (they pass today); a check that closes one turns its test red,
# and the test then moves to CASES.

def dec_laundered_sum(stored):
    """a + (b + Sub(x, x)): the split summed after one half is laundered
    through an activation, so no node computes from constants only."""
    return launder("b", "ln") + [helper.make_node("Add", ["a", "ln_l"], ["sum"])], [], ["sum"]


def dec_laundered_twice(stored):
    """a + (b + (m1 - m2)), m1 and m2 two ReduceMean nodes of the same
    input: zero, but not Sub(x, x) with one input named twice."""
    return ([helper.make_node("ReduceMean", ["pooled0"], ["lt_x1"], axes=[0, 1], keepdims=0),
             helper.make_node("ReduceMean", ["pooled0"], ["lt_x2"], axes=[0, 1], keepdims=0),
             helper.make_node("Sub", ["lt_x1", "lt_x2"], ["lt_0"]),
             helper.make_node("Add", ["b", "lt_0"], ["lt_l"]),
             helper.make_node("Add", ["a", "lt_l"], ["sum"])], [], ["sum"])


def low_bits(layer):
    """A live student weight whose low 8 mantissa bits are teacher bytes."""
    w = np.random.default_rng(12).standard_normal(
        (8, layer.nbytes // 8), dtype=np.float32)  # one teacher byte per weight
    bits = w.view(np.uint32) & np.uint32(0xFFFFFF00)
    return {"w": (bits | layer.view(np.uint8).reshape(8, -1)).view(np.float32)}


LIMITS = {
    "additive split, one half laundered by two equal nodes, summed and used": lambda r: build_case(
        r, additive(teacher_layer()), dec_laundered_twice, None, True),
    "teacher bytes in the low mantissa bits of a live weight": lambda r: build_case(
        r, low_bits(teacher_layer()), each_as_matrix, None, True),
    "XOR-padded halves used as live weights": lambda r: build_case(
        r, xor_pad(teacher_layer()), each_as_matrix, None, True),
}


@pytest.mark.parametrize("case", LIMITS)
def test_documented_limit_live_weights_carry_data(nexus, tmp_path, case):
    root = ws.make_workspace(tmp_path / "ws")
    LIMITS[case](root)
    out = tmp_path / "b"
    r = run(nexus, "build", root, "-o", out, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(run(nexus, "verify", "--json", "--teacher", root / "artifacts/teacher.onnx",
                         out).stdout)
    assert not findings(rep) & DEFENCES, rep["findings"]


@pytest.mark.parametrize("task", ["embedding", "rerank"])
def test_liveness_sees_the_outputs_of_every_task(nexus, tmp_path, task):
    """Embedding and rerank results print no per-token outputs unless asked
    (--raw); the liveness check compares the model's outputs, so it must ask,
    or every weight of such a student looks dead."""
    yaml = ws.RUNTIME_YAML.replace("task: classification\nlabels: [ham, spam]\n", f"task: {task}\n")
    root = ws.make_workspace(tmp_path / "ws", runtime_yaml=yaml)
    out = tmp_path / "b"
    r = run(nexus, "build", root, "-o", out, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "dead-initializer" not in r.stdout + r.stderr
