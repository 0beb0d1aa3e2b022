"""The insider path (issue #22 item 7): someone who controls the workspace,
and only the workspace, runs the official `nexus build --key` with the
release key.  Whatever they put there, the build must end in one of two
ways: nothing published, or a bundle that the deployment gate

    nexus verify --strict --require-signature --pubkey RELEASE.pub
                 --teacher <each teacher the workspace names>

also passes.  The build's self-verification skips work it has already done
(digests taken while writing, the selftest just computed, fingerprints
compared during export); this family proves that no shortcut lets it sign
what the gate would refuse.

One test per class of attack, several workspace changes each.  Other
classes (canonical ONNX, leak budget, imports, xattrs) add their cases to
CASES.
"""
import json
import pickle

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import workspace as ws
from conftest import run

TEACHERS = ["artifacts/teacher.onnx", "checkpoints/teacher.pt"]


# ---------------------------------------------------------------- changes
def set_yaml(root, key, value):
    """Replace (or add) one top-level key of nexus.yaml."""
    lines = [ln for ln in (root / "nexus.yaml").read_text().splitlines()
             if not ln.startswith(key + ":")]
    lines.append(f"{key}: {value}")
    (root / "nexus.yaml").write_text("\n".join(lines) + "\n")


def student_with(root, *, init_names=None, graph_name="student", producer="pytorch",
                 metadata=None, extra_inits=(), extra_nodes=(), vocab_rows=len(ws.VOCAB)):
    """The workspace's student model rebuilt with some of its parts changed."""
    rng = np.random.default_rng(0)
    names = dict({"emb": "embeddings.weight", "cls": "classifier.weight"}, **(init_names or {}))
    emb = rng.standard_normal((vocab_rows, 8), dtype=np.float32)
    w = rng.standard_normal((8, 2), dtype=np.float32)
    nodes = [
        helper.make_node("Gather", [names["emb"], "input_ids"], ["emb"]),
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "axis2"], ["mask_u"]),
        helper.make_node("Mul", ["emb", "mask_u"], ["masked"]),
        helper.make_node("ReduceMean", ["masked"], ["pooled0"], axes=[1], keepdims=0),
    ] + list(extra_nodes) + [
        helper.make_node("MatMul", ["pooled", names["cls"]], ["logits"]),
    ]
    if not extra_nodes:
        nodes.insert(-1, helper.make_node("Identity", ["pooled0"], ["pooled"]))
    graph = helper.make_graph(
        nodes, graph_name,
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        [numpy_helper.from_array(emb, names["emb"]), numpy_helper.from_array(w, names["cls"]),
         numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2")] + list(extra_inits))
    model = helper.make_model(graph, producer_name=producer,
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    for k, v in (metadata or {}).items():
        p = model.metadata_props.add()
        p.key, p.value = k, v
    (root / "artifacts/student.onnx").write_bytes(model.SerializeToString())


def teacher_layer_copied(root):
    """A 64x64 teacher layer carried along, multiplied by zero in the graph."""
    rng = np.random.default_rng(9)
    layer = rng.standard_normal((8, 512), dtype=np.float32)
    teacher = helper.make_model(helper.make_graph(
        [helper.make_node("MatMul", ["x", "layer"], ["y"])], "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 512])],
        [numpy_helper.from_array(layer, "layer")]),
        opset_imports=[helper.make_opsetid("", 13)])
    (root / "artifacts/teacher.onnx").write_bytes(teacher.SerializeToString())
    student_with(root, extra_inits=[numpy_helper.from_array(layer, "proj"),
                                    numpy_helper.from_array(np.zeros((512, 8), np.float32),
                                                            "zero")],
                 extra_nodes=[helper.make_node("MatMul", ["pooled0", "proj"], ["wide"]),
                              helper.make_node("MatMul", ["wide", "zero"], ["nothing"]),
                              helper.make_node("Add", ["pooled0", "nothing"], ["pooled"])])


def random_output(root):
    """Logits plus noise drawn on every run: the golden outputs the build
    wrote once are not what the gate's selftest computes again."""
    student_with(root, extra_nodes=[
        helper.make_node("RandomUniformLike", ["pooled0"], ["noise"], low=0.0, high=1.0),
        helper.make_node("Add", ["pooled0", "noise"], ["pooled"])])


def legacy_pickle_teacher(root):
    """teacher.pt as a legacy (non-zip) pickle: it cannot be fingerprinted."""
    (root / "checkpoints/teacher.pt").write_bytes(
        pickle.dumps({"w": list(range(64))}, protocol=2))


def tokenizer_extra(root, key, text):
    tj = json.loads((root / "artifacts/tokenizer/tokenizer.json").read_text())
    tj["model"][key] = "@@"
    (root / "artifacts/tokenizer/tokenizer.json").write_text(
        json.dumps(tj).replace('"@@"', text))


def vocab_entry(root, entry):
    for name in ("vocab.txt",):
        p = root / "artifacts/tokenizer" / name
        p.write_text(p.read_text() + entry + "\n")
    tj = json.loads((root / "artifacts/tokenizer/tokenizer.json").read_text())
    tj["model"]["vocab"][entry] = len(tj["model"]["vocab"])
    (root / "artifacts/tokenizer/tokenizer.json").write_text(json.dumps(tj, indent=2))


def append(root, rel, text):
    p = root / rel
    p.write_text(p.read_text() + text)


CASES = {
    "names": {
        "initializer named for the teacher": lambda r: student_with(
            r, init_names={"emb": "teacher.embeddings.weight"}),
        "graph named for distillation": lambda r: student_with(r, graph_name="distillation"),
        "architecture names the teacher": lambda r: set_yaml(r, "architecture",
                                                             "BertTeacherDistilled"),
    },
    "metadata": {
        "kept metadata naming the teacher": lambda r: (
            student_with(r, metadata={"source": "teacher bert-large"}),
            set_yaml(r, "metadata_keep", "[source]")),
        "producer naming the teacher": lambda r: student_with(r, producer="teacher-export"),
    },
    "vocab": {
        "vocabulary entry of 300 bytes": lambda r: vocab_entry(r, "x" * 300),
        "vocabulary entry that is base64": lambda r: vocab_entry(
            r, "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0MjQy"),
    },
    "code": {
        "comment naming the teacher": lambda r: append(
            r, "serving/utils.py", "# weights came from the teacher\n"),
        "docstring naming distillation": lambda r: append(
            r, "serving/utils.py", 'def f():\n    """Distillation helper."""\n'),
        "README naming the teacher": lambda r: append(
            r, "README.md", "\nDistilled from a teacher model.\n"),
        "framework declared for serving": lambda r: (r / "config/runtime.yaml").write_text(
            ws.RUNTIME_YAML.replace("[numpy, onnxruntime]", "[numpy, onnxruntime, torch]")),
        "dynamic import": lambda r: append(
            r, "serving/utils.py", "import importlib\nm = importlib.import_module('o' + 's')\n"),
    },
    "size": {
        "teacher layer carried and zeroed": teacher_layer_copied,
        "teacher checkpoint that cannot be fingerprinted": legacy_pickle_teacher,
    },
    "functional": {
        "outputs that change on every run": random_output,
    },
    "cost": {
        "tokenizer.json of many small values": lambda r: tokenizer_extra(
            r, "extra", "[" + ",".join(["{}"] * 1_000_000) + "]"),
        "one statement of 100,000 names": lambda r: append(
            r, "serving/utils.py", "n = 0\nx = (" + ", ".join(["n"] * 100_000) + ")\n"),
    },
}


def gate(nexus, bundle, pub, root):
    teachers = [a for t in TEACHERS if (root / t).exists() for a in ("--teacher", root / t)]
    return run(nexus, "verify", "--json", "--strict", "--require-signature", "--pubkey", pub,
               *teachers, bundle, timeout=300)


@pytest.mark.parametrize("cls,case", [(c, k) for c, v in CASES.items() for k in v])
def test_insider_build_signs_only_what_the_gate_passes(nexus, release_key, tmp_path, cls, case):
    key, pub = release_key
    root = ws.make_workspace(tmp_path / "ws")
    CASES[cls][case](root)
    out = tmp_path / "bundle"
    b = run(nexus, "build", root, "-o", out, "--key", key, timeout=300)
    if not out.exists():
        assert b.returncode != 0, b.stderr
        return
    assert b.returncode == 0, b.stderr
    g = gate(nexus, out, pub, root)
    assert g.returncode == 0, (
        f"{cls}/{case}: the build signed and published a bundle the gate refuses:\n"
        + "\n".join(f"{f['severity']} {f['code']}: {f['message']}"
                    for f in json.loads(g.stdout)["findings"] if f["severity"] != "INFO"))


def test_clean_workspace_is_signed_and_passes_the_gate(nexus, release_key, tmp_path):
    """The family's baseline: an untouched workspace builds, and passes."""
    key, pub = release_key
    root = ws.make_workspace(tmp_path / "ws")
    out = tmp_path / "bundle"
    b = run(nexus, "build", root, "-o", out, "--key", key, timeout=300)
    assert b.returncode == 0, b.stderr
    g = gate(nexus, out, pub, root)
    assert g.returncode == 0, g.stdout


def test_build_refusal_names_the_sum_it_judged(nexus, tmp_path):
    """The build judges the one 16 KiB sum without the tensors
    allow_shared_tensors names (as verify does), so its refusal must name
    that sum.  It printed the sum before the accepted tensor was taken
    out: two layers 15% kept in place, one of them accepted, refused as
    about twice the bytes that were judged."""
    import re
    from test_quantize import EMBED_RT
    from test_quantize import embedder as q_embedder

    def embedder(emb, w1, w2):
        m = q_embedder(dim=w2.shape[1])
        for t in m.graph.initializer:
            t.CopyFrom(numpy_helper.from_array({"embeddings.weight": emb, "dense1.weight": w1,
                                                "dense2.weight": w2}[t.name], t.name))
        return m.SerializeToString()

    rng = np.random.default_rng(61)
    D, K = 64, 512
    ta = (rng.standard_normal((D, K)) / 8).astype(np.float32)
    tb = (rng.standard_normal((K, D)) / 8).astype(np.float32)

    def kept(t):
        keep = rng.random(t.shape) < 0.15
        return np.where(keep, t, (rng.standard_normal(t.shape) / 8).astype(np.float32))

    emb = rng.standard_normal((len(ws.VOCAB), D)).astype(np.float32)
    w1, w2 = kept(ta), kept(tb)
    root = ws.make_workspace(tmp_path / "ws", runtime_yaml=EMBED_RT,
                             student=embedder(emb, w1, w2))
    t = helper.make_model(helper.make_graph(
        [helper.make_node("Identity", [n], [n + ".out"]) for n in ("layer.a", "layer.b")], "t",
        [], [helper.make_tensor_value_info(n + ".out", TensorProto.FLOAT, None)
             for n in ("layer.a", "layer.b")],
        [numpy_helper.from_array(ta, "layer.a"), numpy_helper.from_array(tb, "layer.b")]),
        opset_imports=[helper.make_opsetid("", 13)])
    t.ir_version = 7
    (root / "artifacts/teacher.onnx").write_bytes(t.SerializeToString())
    with open(root / "nexus.yaml", "a") as f:
        f.write("allow_shared_tensors:\n  - {name: dense1.weight, reason: frozen base}\n")
    # what inspect counts for the tensor that is not accepted
    s = tmp_path / "s.onnx"
    s.write_bytes(embedder(emb, w1, w2))
    r = run(nexus, "inspect", "--json", s, "--teacher", root / "artifacts/teacher.onnx")
    judged = sum(m.get("sum_bytes", 0) for m in json.loads(r.stdout)["shared_tensors"]
                 if m["tensor"] == "dense2.weight")
    assert judged > 16384, r.stdout
    b = run(nexus, "build", root, "-o", tmp_path / "bundle", timeout=300)
    assert b.returncode != 0 and not (tmp_path / "bundle").exists(), b.stderr
    said = re.search(r"(\d+) bytes of teacher weights in one sum", b.stderr)
    # the sample is keyed per run, so the two counts differ by a few
    # percent; the sum with the accepted tensor in it is about twice
    assert said and 16384 < int(said.group(1)) < 1.4 * judged, (judged, b.stderr)
