"""Real students' dead parameters (issue #22): a Hugging Face BERT layer
keeps a separate key bias, which softmax cannot see (it adds q.b to every
score of a query), so verify's liveness check calls it dead.  `nexus build`
stores such dead bias vectors as zeros (src/lib/build/build_dead.c), says
so in its report, and the bundle passes the gate with outputs unchanged;
a dead matrix is still refused (tests/e2e/test_trust.py), and the live
parts of a real student (LayerNorm, a position table longer than
max_sequence_length) are never touched."""
import json

import numpy as np
import pytest

import workspace as ws
from conftest import ROOT, run
from test_insider import gate

CLI = ROOT / "build/libexec/nexus/bin/nexus_cli"


def hf_bert_student(path, vocab, hidden=32, heads=4, layers=2, positions=128, dead_dense=False):
    """A BERT encoder written as transformers writes it: query, key and
    value are separate Linear layers with biases (the key bias is dead),
    LayerNorm after each residual, a position table longer than the texts
    (rows past max_sequence_length are never indexed), pooler, classifier.
    Returns a function computing the logits in torch from ids."""
    import torch

    torch.manual_seed(1)

    class Attention(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.query = torch.nn.Linear(hidden, hidden)
            self.key = torch.nn.Linear(hidden, hidden)
            self.value = torch.nn.Linear(hidden, hidden)
            self.out = torch.nn.Linear(hidden, hidden)
            self.ln = torch.nn.LayerNorm(hidden)
            with torch.no_grad():   # trained biases are not zeros
                for lin in (self.query, self.key, self.value):
                    lin.bias.normal_(0, 0.5)

        def split(self, x):
            b, n, _ = x.shape
            return x.view(b, n, heads, hidden // heads).transpose(1, 2)

        def forward(self, x, bias):
            q, k, v = self.split(self.query(x)), self.split(self.key(x)), self.split(self.value(x))
            s = q @ k.transpose(-1, -2) / (hidden // heads) ** 0.5 + bias
            c = (s.softmax(-1) @ v).transpose(1, 2).reshape(x.shape)
            return self.ln(x + self.out(c))

    class Layer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.att = Attention()
            self.ff1 = torch.nn.Linear(hidden, 4 * hidden)
            self.ff2 = torch.nn.Linear(4 * hidden, hidden)
            self.ln = torch.nn.LayerNorm(hidden)

        def forward(self, x, bias):
            x = self.att(x, bias)
            return self.ln(x + self.ff2(torch.nn.functional.gelu(self.ff1(x))))

    class Bert(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.word = torch.nn.Embedding(vocab, hidden)
            self.pos = torch.nn.Embedding(positions, hidden)
            self.typ = torch.nn.Embedding(2, hidden)
            self.ln = torch.nn.LayerNorm(hidden)
            self.layers = torch.nn.ModuleList([Layer() for _ in range(layers)])
            self.pool = torch.nn.Linear(hidden, hidden)
            self.cls = torch.nn.Linear(hidden, 2)
            self.junk = torch.nn.Parameter(torch.randn(8, 64)) if dead_dense else None

        def forward(self, input_ids, attention_mask):
            n = input_ids.shape[1]
            x = self.ln(self.word(input_ids) + self.pos(torch.arange(n).unsqueeze(0)) +
                        self.typ(torch.zeros_like(input_ids)))
            bias = (1.0 - attention_mask[:, None, None, :].float()) * -10000.0
            for layer in self.layers:
                x = layer(x, bias)
            logits = self.cls(torch.tanh(self.pool(x[:, 0])))
            if self.junk is not None:   # a matrix kept in form only: dead
                logits = logits + (x[:, :1, :1] - x[:, :1, :1]).reshape(-1, 1) * self.junk.sum()
            return logits

    model = Bert().eval()
    ids = torch.ones((1, 8), dtype=torch.long)
    torch.onnx.export(model, (ids, torch.ones_like(ids)), str(path),
                      input_names=["input_ids", "attention_mask"], output_names=["logits"],
                      opset_version=14,
                      dynamic_axes={"input_ids": {0: "batch", 1: "seq"},
                                    "attention_mask": {0: "batch", 1: "seq"},
                                    "logits": {0: "batch"}})

    def forward(id_list):
        with torch.no_grad():
            t = torch.tensor([id_list], dtype=torch.long)
            return model(t, torch.ones_like(t))[0].numpy()
    return forward


def key_biases(layers=2):
    return {f"layers.{i}.att.key.bias" for i in range(layers)}


def budget_of(rep):
    import re
    f = next(f for f in rep["findings"] if f["code"] in ("budget-total", "budget-exceeded"))
    return int(re.search(r"carries (\d+) bytes", f["message"]).group(1))


def test_hf_bert_key_biases_are_zeroed_and_the_gate_passes(nexus, release_key, tmp_path):  # noqa: F811
    key, pub = release_key
    root = ws.make_workspace(tmp_path / "ws")
    forward = hf_bert_student(root / "artifacts/student.onnx", len(ws.VOCAB))
    out = tmp_path / "b"
    r = run(nexus, "build", root, "-o", out, "--key", key, "--json", timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(r.stdout)
    zeroed = {z["name"]: z for z in doc["zeroed_initializers"]}
    # the report names exactly the key biases: LayerNorm betas, the value
    # and query biases and the long position table are live
    assert set(zeroed) == key_biases(), doc["zeroed_initializers"]
    for z in zeroed.values():
        assert z["bytes"] == 32 * 4 and z["change"] < 1e-6 and z["zero_change"] < 1e-6
    # the gate passes (liveness sees zeros: dead-empty, no finding)
    g = gate(nexus, out, pub, root)
    rep = json.loads(g.stdout)
    assert g.returncode == 0, [f for f in rep["findings"] if f["severity"] != "INFO"]
    assert "dead-initializer" not in {f["code"] for f in rep["findings"]}
    print(f"\nHF-BERT-shaped student: leak budget {budget_of(rep)} bytes, "
          f"zeroed {sorted(zeroed)}")
    # the key biases in the bundle are zeros; the outputs are torch's
    lv = run(CLI, "liveness", "--bundle", out)
    verdicts = {json.loads(ln)["initializer"]: json.loads(ln)["verdict"]
                for ln in lv.stdout.splitlines() if '"verdict"' in ln}
    assert all(verdicts[k] == "dead-empty" for k in key_biases()), verdicts
    # everything else is live: LayerNorm, the 128-row position table (the
    # texts reach 32 positions), the query and value biases
    assert {k for k, v in verdicts.items() if v != "live"} == key_biases(), verdicts
    assert verdicts["pos.weight"] == verdicts["ln.bias"] == "live"
    for text in ("free money, click now", "lunch at noon tomorrow ?", "win"):
        got = json.loads(run(out / "bin/nexus_cli", "run", "--text", text).stdout)
        ids = json.loads(run(out / "bin/nexus_cli", "tokenize", "--json", "--text", text)
                         .stdout)["ids"]
        want = forward(ids)
        assert np.allclose(got["outputs"]["logits"], want, rtol=1e-6, atol=1e-6), (got, want)


def test_dead_matrix_is_not_zeroed(nexus, tmp_path):
    """Zeroing is for bias vectors: a dead matrix is no parameter of any
    architecture, and the build refuses it (dead-initializer) instead of
    hiding what its author wired wrong."""
    root = ws.make_workspace(tmp_path / "ws")
    hf_bert_student(root / "artifacts/student.onnx", len(ws.VOCAB), layers=1, dead_dense=True)
    out = tmp_path / "b"
    r = run(nexus, "build", root, "-o", out, "--json", timeout=600)
    assert r.returncode != 0 and not out.exists()
    assert "dead-initializer" in r.stdout + r.stderr and "junk" in r.stdout + r.stderr


def _dead_use(name):
    """pooled = pooled0 + sum(name * Sub(x, x)): name kept in form only."""
    from onnx import helper
    return [helper.make_node("ReduceMean", ["pooled0"], ["d_x"], axes=[0, 1], keepdims=0),
            helper.make_node("Sub", ["d_x", "d_x"], ["d_0"]),
            helper.make_node("Mul", [name, "d_0"], ["d_m"]),
            helper.make_node("ReduceSum", ["d_m"], ["d_s"], keepdims=0),
            helper.make_node("Add", ["pooled0", "d_s"], ["pooled"])]


@pytest.mark.parametrize("shape", [(64,), (1, 64)])
def test_dead_bias_vector_from_an_insider_is_emptied(nexus, tmp_path, shape):
    """Data stored as a 'bias' the outputs cannot see is zeroed like a key
    bias: what ships is zeros, whatever was meant."""
    from onnx import numpy_helper
    from test_insider import student_with

    root = ws.make_workspace(tmp_path / "ws")
    secret = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    student_with(root, extra_inits=[numpy_helper.from_array(secret, "smuggled")],
                 extra_nodes=_dead_use("smuggled"))
    out = tmp_path / "b"
    r = run(nexus, "build", root, "-o", out, "--json", timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert [z["name"] for z in json.loads(r.stdout)["zeroed_initializers"]] == ["smuggled"]
    lv = run(CLI, "liveness", "--bundle", out)
    assert '"initializer":"smuggled","verdict":"dead-empty"' in lv.stdout, lv.stdout
    rep = json.loads(run(nexus, "verify", "--json", out).stdout)
    assert rep["verdict"] != "FAIL", [f for f in rep["findings"] if f["severity"] == "FAIL"]


# -- dead initializers of every fixed-width type (red team 12) -------------------
# liveness.c once perturbed float32/64, float16, bfloat16 and int8 to int64
# only: a dead uint32 tensor was skipped in silence.  Each type below is
# kept "used" by a zero the graph computes at run time (Tanh(h) - Tanh(h),
# or the difference of two equal ReduceMeans), after a Cast to float.
def _buffer(dtype, shape, seed=3):
    """A TensorProto of ONNX type dtype holding random bytes as raw_data
    (valid codes: bool 0/1)."""
    from onnx import TensorProto as TP
    n = int(np.prod(shape))
    bits = {TP.BOOL: 8, TP.UINT16: 16, TP.UINT32: 32, TP.UINT64: 64, 17: 8, 19: 8,
            22: 4}[dtype]
    raw = np.random.default_rng(seed).integers(0, 256, (n * bits + 7) // 8, dtype=np.uint8)
    if dtype == TP.BOOL:
        raw &= 1
    if dtype in (17, 19):           # no NaN codes: e4m3fn S.1111.111, e5m2 S.11111.xx
        raw &= 0x77 if dtype == 17 else 0x7b
    p = TP()
    p.name, p.data_type = "position_buffer", dtype
    p.dims.extend(shape)
    p.raw_data = raw.tobytes()
    return p


ZERO_SPELLINGS = {
    "tanh-minus-tanh": lambda: [("Tanh", ["h1"], "a1b"), ("Sub", ["a1", "a1b"], "z")],
    "mean-minus-mean": lambda: [("ReduceMean", ["h1"], "m1"), ("ReduceMean", ["h1"], "m2"),
                                ("Sub", ["m1", "m2"], "z")],
}


def _dead_typed_embedder(tensor, zero, opset):
    from onnx import TensorProto as TP, helper
    from onnx import numpy_helper
    rng = np.random.default_rng(5)
    d, h = 16, 32
    emb = rng.standard_normal((len(ws.VOCAB), d)).astype(np.float32)
    w1 = (rng.standard_normal((d, h)) / 4).astype(np.float32)
    w2 = (rng.standard_normal((h, d)) / 4).astype(np.float32)
    mk = lambda op, ins, out, **kw: helper.make_node(op, ins, [out], name=out, **kw)  # noqa: E731
    nodes = [mk("Gather", ["embeddings.weight", "input_ids"], "emb"),
             mk("MatMul", ["emb", "dense1.weight"], "h1"), mk("Tanh", ["h1"], "a1")]
    nodes += [mk(*z) for z in ZERO_SPELLINGS[zero]()]
    nodes += [mk("ReduceSum", ["z"], "zs", keepdims=0),
              mk("Cast", ["position_buffer"], "pb", to=TP.FLOAT),
              mk("Mul", ["pb", "zs"], "pbz"), mk("ReduceSum", ["pbz"], "dead", keepdims=0),
              mk("MatMul", ["a1", "dense2.weight"], "o"),
              mk("Add", ["o", "dead"], "last_hidden_state")]
    g = helper.make_graph(
        nodes, "embedder",
        [helper.make_tensor_value_info("input_ids", TP.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info("attention_mask", TP.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("last_hidden_state", TP.FLOAT, ["batch", "seq", d])],
        [numpy_helper.from_array(emb, "embeddings.weight"),
         numpy_helper.from_array(w1, "dense1.weight"),
         numpy_helper.from_array(w2, "dense2.weight"), tensor])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 10 if opset >= 21 else 9 if opset >= 19 else 7
    return m.SerializeToString()


# ONNX type -> the opset whose Cast reads it
DEAD_TYPES = {"uint16": (4, 13), "uint32": (12, 13), "uint64": (13, 13), "bool": (9, 13),
              "float8e4m3fn": (17, 19), "float8e5m2": (19, 19), "int4": (22, 21)}


@pytest.mark.parametrize("zero", sorted(ZERO_SPELLINGS))
@pytest.mark.parametrize("dtype", sorted(DEAD_TYPES))
def test_dead_matrix_of_every_type_is_refused(nexus, tmp_path, dtype, zero):
    """A dead 16 x 64 tensor of each type: the build refuses it, naming it."""
    from test_quantize import EMBED_RT
    code, opset = DEAD_TYPES[dtype]
    root = ws.make_workspace(tmp_path / "ws", runtime_yaml=EMBED_RT, student=_dead_typed_embedder(
        _buffer(code, (16, 64)), zero, opset))
    out = tmp_path / "b"
    r = run(nexus, "build", root, "-o", out, "--json", timeout=600)
    assert r.returncode != 0 and not out.exists(), r.stdout[-2000:]
    assert "dead-initializer" in r.stdout + r.stderr, (r.stdout + r.stderr)[-3000:]
    assert "position_buffer" in r.stdout + r.stderr


@pytest.mark.parametrize("dtype", ["uint32", "bool", "float8e4m3fn", "int4"])
def test_dead_vector_of_a_new_type_is_zeroed(nexus, tmp_path, dtype):
    """A dead vector (a 'bias') of these types is stored as zeros like a
    float one, and the bundle passes."""
    from onnx import load
    from test_quantize import EMBED_RT
    code, opset = DEAD_TYPES[dtype]
    root = ws.make_workspace(tmp_path / "ws", runtime_yaml=EMBED_RT, student=_dead_typed_embedder(
        _buffer(code, (256,)), "tanh-minus-tanh", opset))
    out = tmp_path / "b"
    r = run(nexus, "build", root, "-o", out, "--json", timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert [z["name"] for z in json.loads(r.stdout)["zeroed_initializers"]] == ["position_buffer"]
    m = load(str(out / "model/student_model.onnx"))
    t = next(t for t in m.graph.initializer if t.name == "position_buffer")
    assert t.raw_data and not any(t.raw_data)


def test_string_initializer_is_unchecked(nexus, release_key, tmp_path):
    """A string tensor cannot be replaced by noise: it is a finding
    (initializer-unchecked), so the signed build refuses it."""
    from onnx import TensorProto as TP, helper
    from test_insider import student_with
    key, _ = release_key
    root = ws.make_workspace(tmp_path / "ws")
    strs = helper.make_tensor("notes", TP.STRING, [8], [b"x" * 40] * 8)
    student_with(root, extra_inits=[strs], extra_nodes=[
        helper.make_node("Shape", ["notes"], ["ns"]),
        helper.make_node("Cast", ["ns"], ["nsf"], to=TP.FLOAT)] + _dead_use("nsf"))
    r = run(nexus, "build", root, "-o", tmp_path / "b", "--key", key, "--json", timeout=600)
    assert r.returncode != 0 and not (tmp_path / "b").exists(), r.stderr[-2000:]
    assert "initializer-unchecked" in r.stdout + r.stderr, (r.stdout + r.stderr)[-3000:]
    assert "notes" in r.stdout + r.stderr
