"""bin/nexus_cli outputs users can use (issue #17): pooled embeddings
(mean / cls / last, normalize, output_dims), "outputs" only on request,
shortest float32 numbers, scores as a label map, rerank scores; one input
the model rejects never costs the others; length-bucketed batches keep
input order and results."""
import json
import pathlib
import re
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import tokfixture  # noqa: E402
from conftest import BUILD, run  # noqa: E402
from test_runtime import (H, LABELS, TEXTS, expected, jsonl, make_bundle,  # noqa: E402
                          masked_mean_head, run_texts, token_ids, write_manifest)

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

V = len(tokfixture.vocab())


def pos_model(path, positions, classes=3, seed=3, vocab=V):
    """hidden = (E[ids] + P[0..L)) * mask, logits = mean(hidden) @ W + b: a
    position table of `positions` rows, as BERT-shaped models have."""
    rnd = np.random.RandomState(seed)
    E = rnd.randn(vocab, H).astype(np.float32)
    P = rnd.randn(positions, H).astype(np.float32)
    W = rnd.randn(H, classes).astype(np.float32)
    b = rnd.randn(classes).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["E", "input_ids"], ["emb"]),
        helper.make_node("Shape", ["input_ids"], ["shp"]),
        helper.make_node("Gather", ["shp", "one"], ["seqlen"], axis=0),
        helper.make_node("Range", ["zero", "seqlen", "one"], ["pos"]),
        helper.make_node("Gather", ["P", "pos"], ["pe"]),
        helper.make_node("Add", ["emb", "pe"], ["x"]),
    ] + masked_mean_head("x")
    graph = helper.make_graph(
        nodes, "student",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes]),
         helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "seq", H])],
        [numpy_helper.from_array(E, "E"), numpy_helper.from_array(P, "P"),
         numpy_helper.from_array(W, "W"), numpy_helper.from_array(b, "b"),
         numpy_helper.from_array(np.array(0, dtype=np.int64), "zero"),
         numpy_helper.from_array(np.array(1, dtype=np.int64), "one"),
         numpy_helper.from_array(np.array([1], dtype=np.int64), "ax1"),
         numpy_helper.from_array(np.array([2], dtype=np.int64), "ax2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="nexus-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    if path is None:
        return model.SerializeToString()
    onnx.save(model, str(path))
    return E, P, W, b


def pos_expected(ids, E, P, W, b):
    x = E[np.array(ids)] + P[:len(ids)]
    return x.mean(axis=0) @ W + b


def with_model(root, positions, classes=3, **kw):
    """A make_bundle bundle whose model is pos_model()."""
    cli = make_bundle(root, selftest=False, **kw)
    weights = pos_model(root / "model" / "student_model.onnx", positions, classes)
    write_manifest(root)
    return cli, weights


def embedding_bundle(root, yaml):
    return make_bundle(root, task="embedding", selftest=False,
                       extra_yaml="output: hidden\n" + yaml)


@pytest.mark.parametrize("pooling,normalize,dims", [
    ("mean", True, 0), ("cls", False, 0), ("last", True, 0), ("mean", True, 4),
    ("last", False, 3)])
def test_embedding_pooling(tmp_path, pooling, normalize, dims):
    yaml = f"pooling: {pooling}\nnormalize: {str(normalize).lower()}\n"
    if dims:
        yaml += f"output_dims: {dims}\n"
    cli = embedding_bundle(tmp_path / "b", yaml)
    texts = TEXTS[:3] + ["x", "hello world " * 40]
    r = run_texts(cli, texts)
    assert r.returncode == 0, r.stderr
    for got, ids in zip(jsonl(r.stdout), token_ids(cli, texts)):
        _, _, emb = expected(ids, V)
        e = {"mean": emb.mean(axis=0), "cls": emb[0], "last": emb[-1]}[pooling]
        if dims:
            e = e[:dims]
        if normalize:
            e = e / np.linalg.norm(e)
        assert set(got) == {"embedding"}, "no per-token outputs unless --raw"
        np.testing.assert_allclose(got["embedding"], e, atol=1e-6)


def test_embedding_raw_on_request(tmp_path):
    cli = embedding_bundle(tmp_path / "b", "")
    r = run_texts(cli, ["hello world"], "--raw")
    assert r.returncode == 0, r.stderr
    got = jsonl(r.stdout)[0]
    ids = token_ids(cli, ["hello world"])[0]
    _, _, emb = expected(ids, V)
    np.testing.assert_allclose(np.array(got["outputs"]["hidden"]).reshape(-1, H), emb, atol=1e-6)
    assert len(got["embedding"]) == H


def test_output_dims_above_the_model_is_config_error(tmp_path):
    cli = embedding_bundle(tmp_path / "b", f"output_dims: {H + 1}\n")
    r = run_texts(cli, ["x"])
    assert r.returncode == 2
    assert "output_dims" in r.stderr and str(H) in r.stderr


def significant(s):
    """The significant digits of a printed number."""
    m = s.lstrip("-").lower().split("e")[0].replace(".", "").lstrip("0").rstrip("0")
    return m or "0"


def test_floats_are_shortest_float32_round_trips(tmp_path):
    cli = embedding_bundle(tmp_path / "b", "")
    r = run_texts(cli, TEXTS, "--raw")
    assert r.returncode == 0, r.stderr
    numbers = re.findall(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", r.stdout)
    assert len(numbers) > 300
    for s in numbers:
        f = np.float32(s)
        # reads back as the float32, and no shorter form does (numpy's
        # repr of a float32 is the shortest that round-trips)
        assert np.float32(float(s)) == f
        assert len(significant(s)) <= len(significant(np.format_float_scientific(f, unique=True)))
    assert "0.100000001" not in r.stdout
    # 9 significant digits at most: not the 17 of a double
    assert max(len(significant(s)) for s in numbers) <= 9


def test_f32_shortest_known_values(tmp_path):
    """Values whose shortest forms are known, through a raw model output."""
    cli = make_bundle(tmp_path / "b", task="raw", selftest=False)
    root = cli.parents[1]
    vals = np.array([0.1, 1.0, 3.4028235e38, 1e-45, -2.5, 16777216.0, 0.3, 1.17549435e-38],
                    dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("Shape", ["input_ids"], ["s"]),
         helper.make_node("Slice", ["s", "z", "o"], ["b1"]),
         helper.make_node("Concat", ["b1", "n"], ["shape"], axis=0),
         helper.make_node("Expand", ["c", "shape"], ["out"])],
        "student",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", len(vals)])],
        [numpy_helper.from_array(vals, "c"),
         numpy_helper.from_array(np.array([0], dtype=np.int64), "z"),
         numpy_helper.from_array(np.array([1], dtype=np.int64), "o"),
         numpy_helper.from_array(np.array([len(vals)], dtype=np.int64), "n")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(root / "model" / "student_model.onnx"))
    write_manifest(root)
    r = run_texts(cli, ["x"])
    assert r.returncode == 0, r.stderr
    printed = r.stdout.split("[")[1].split("]")[0].split(",")
    assert printed == ["0.1", "1.0", "3.4028235e38", "1e-45", "-2.5", "16777216.0", "0.3",
                       "1.1754944e-38"]


def test_scores_as_label_map(tmp_path):
    cli = make_bundle(tmp_path / "b", selftest=False, extra_yaml="scores: map\n")
    r = run_texts(cli, TEXTS[:2])
    assert r.returncode == 0, r.stderr
    for got, ids in zip(jsonl(r.stdout), token_ids(cli, TEXTS[:2])):
        _, probs, _ = expected(ids, V)
        assert list(got["scores"]) == LABELS
        np.testing.assert_allclose([got["scores"][l] for l in LABELS], probs, atol=1e-6)
        assert got["label"] == LABELS[int(np.argmax(probs))]


def test_scores_map_only_for_classification(tmp_path):
    cli = make_bundle(tmp_path / "b", task="raw", selftest=False, extra_yaml="scores: map\n")
    r = run_texts(cli, ["x"])
    assert r.returncode == 2 and "scores is only valid with task: classification" in r.stderr


@pytest.mark.parametrize("classes", [1, 2])
def test_rerank_score(tmp_path, classes):
    cli, (E, P, W, b) = with_model(tmp_path / "b", 64, classes=classes, task="rerank")
    r = run_texts(cli, TEXTS[:3])
    assert r.returncode == 0, r.stderr
    for got, ids in zip(jsonl(r.stdout), token_ids(cli, TEXTS[:3])):
        logits = pos_expected(ids, E, P, W, b)
        want = logits[0] if classes == 1 else 1 / (1 + np.exp(logits[0] - logits[1]))
        assert set(got) == {"score"}
        assert got["score"] == pytest.approx(float(want), abs=1e-5)


def test_rerank_needs_one_or_two_scores(tmp_path):
    cli, _ = with_model(tmp_path / "b", 64, classes=3, task="rerank")
    r = run_texts(cli, ["x"])
    assert r.returncode == 2 and "one score" in r.stderr


def test_text_the_model_rejects_costs_only_itself(tmp_path):
    """A model with 16 positions behind max_sequence_length 64: the long
    text fails in ONNX Runtime; the others of its batch are answered, in
    order, equal to their results alone; exit 3 at the end."""
    cli, (E, P, W, b) = with_model(tmp_path / "b", 16, max_len=64, batch_size=4)
    long = "hello world " * 20
    texts = ["free money", long, "lunch at noon", "x", long, "hello"]
    r = run_texts(cli, texts)
    assert r.returncode == 3
    res = jsonl(r.stdout)
    assert len(res) == len(texts)
    ids = token_ids(cli, texts)
    for i, (got, row) in enumerate(zip(res, ids)):
        if texts[i] == long:
            assert got["code"] == "model-error", got
            assert "model-error" in got["error"]
            continue
        np.testing.assert_allclose(got["outputs"]["logits"], pos_expected(row, E, P, W, b),
                                   atol=1e-5)
    assert "\x1b" not in r.stderr
    assert all(l.startswith("nexus_cli") for l in r.stderr.splitlines()), r.stderr
    assert "2 of 6 inputs failed" in r.stderr


def test_bucketed_batches_keep_order_and_results(tmp_path):
    """Mixed lengths, batch 4 (sorted by length inside the window) against
    batch 1: the same results, in input order."""
    rnd = np.random.RandomState(5)
    words = ["hello", "world", "free", "money", "lunch", "noon", "click"]
    texts = [" ".join(rnd.choice(words, rnd.randint(0, 25))) for _ in range(150)]
    outs = []
    for bs in (1, 4):
        cli = make_bundle(tmp_path / f"b{bs}", batch_size=bs, selftest=False)
        f = tmp_path / "in.txt"
        f.write_text("\n".join(texts) + "\n")
        r = run(cli, "run", "--input", f)
        assert r.returncode == 0, r.stderr
        outs.append(jsonl(r.stdout))
    assert len(outs[0]) == len(outs[1]) == len(texts)
    for a, c in zip(*outs):
        np.testing.assert_allclose(a["outputs"]["logits"], c["outputs"]["logits"], atol=1e-6)
        assert len(a["outputs"]["hidden"]) == len(c["outputs"]["hidden"])


@pytest.mark.parametrize("positions", [16, 32])
def test_build_checks_max_sequence_length_against_the_model(nexus, tmp_path, positions):
    """runtime.yaml says 32 tokens: a model with 16 positions is refused at
    build time naming both numbers (exit 2); one with 32 builds, and its
    selftest holds a text of 32 tokens."""
    from test_build import build
    from workspace import VOCAB, make_workspace
    ws = make_workspace(tmp_path / "ws", student=pos_model(None, positions, classes=2,
                                                           vocab=len(VOCAB)))
    r = build(nexus, ws, tmp_path / "out")
    if positions == 16:
        assert r.returncode == 2, r.stderr
        assert "max_sequence_length 32 is more than the model takes" in r.stderr
        assert "up to 16 tokens" in r.stderr and "runtime.yaml" in r.stderr
        return
    assert r.returncode == 0, r.stderr
    golden = json.loads((tmp_path / "out" / "config" / "selftest.json").read_text())
    long = golden["cases"][-1]
    cli = tmp_path / "out" / "bin" / "nexus_cli"
    assert len(token_ids(cli, [long["text"]])[0]) == 32
    assert long["outputs"] == {} and long["label"] in ("ham", "spam")
    assert run(cli, "selftest").returncode == 0


@pytest.mark.parametrize("rel", ["model/tokenizer/vocab.txt", "bin/nexus_cli"])
def test_integrity_checked_beside_the_load_still_gates_every_answer(tmp_path, rel):
    """SHA-256 runs on a second thread while the model loads: a file that
    still loads fine (the same size, one byte changed) is refused all the
    same, before any answer."""
    cli = make_bundle(tmp_path / "b")
    f = tmp_path / "b" / rel
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x01
    if rel == "bin/nexus_cli":   # the build's copy runs; the bundle's is the one changed
        cli = BUILD / "libexec" / "nexus" / "bin" / "nexus_cli"
    f.write_bytes(bytes(data))
    for verb in (["run", "--text", "x"], ["info"], ["selftest"]):
        r = run(cli, *verb, "--bundle", tmp_path / "b")
        assert r.returncode == 1, (verb, r.stderr)
        assert rel in r.stderr and "integrity" in r.stderr
        assert r.stdout == ""


def torch_positions_student(path, vocab, positions, *, fixed_len=None, buffer=False):
    """A torch BERT-shaped embedding block with a position table of
    `positions` rows, exported by torch.onnx: positions as torch.arange
    (a Range in the graph) or, with buffer, sliced from a registered
    position_ids buffer as transformers does (and its token_type_ids
    buffer of zeros, sliced and read from a 2-row table before the
    positions, as BertEmbeddings does); fixed_len exports the sequence axis
    fixed at that length."""
    import torch

    torch.manual_seed(4)

    class Student(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.word = torch.nn.Embedding(vocab, 16)
            self.pos = torch.nn.Embedding(positions, 16)
            self.cls = torch.nn.Linear(16, 2)
            self.typ = torch.nn.Embedding(2, 16)
            self.register_buffer("position_ids", torch.arange(positions).unsqueeze(0))
            self.register_buffer("token_type_ids", torch.zeros(1, positions, dtype=torch.long))

        def forward(self, input_ids, attention_mask):
            n = input_ids.shape[1]
            pos = self.position_ids[:, :n] if buffer else torch.arange(n).unsqueeze(0)
            x = self.word(input_ids)
            if buffer:
                x = x + self.typ(self.token_type_ids[:, :n])
            x = x + self.pos(pos)
            m = attention_mask.unsqueeze(-1).float()
            return self.cls((x * m).sum(1) / m.sum(1))

    ids = torch.ones((1, fixed_len or 8), dtype=torch.long)
    axes = {0: "batch"} if fixed_len else {0: "batch", 1: "seq"}
    torch.onnx.export(Student().eval(), (ids, torch.ones_like(ids)), str(path),
                      input_names=["input_ids", "attention_mask"], output_names=["logits"],
                      opset_version=14, dynamic_axes={"input_ids": axes, "attention_mask": axes,
                                                      "logits": {0: "batch"}})
    return path.read_bytes()


@pytest.mark.parametrize("form", ["arange", "buffer", "fixed"])
def test_build_reads_the_position_capacity_from_the_graph(nexus, tmp_path, form):
    """A torch student with 64 positions behind max_sequence_length 128 is
    refused at build time from its graph (the position-embedding Gather, or
    the ids input fixed at 64), naming both numbers, before any selftest;
    at max_sequence_length 64 the same student builds."""
    from test_build import build
    from workspace import RUNTIME_YAML, VOCAB, make_workspace
    student = torch_positions_student(
        tmp_path / "s.onnx", len(VOCAB), 512 if form == "fixed" else 64,
        fixed_len=64 if form == "fixed" else None, buffer=form == "buffer")
    for max_len in (128, 64):
        ws = make_workspace(tmp_path / f"ws{max_len}", student=student,
                            runtime_yaml=RUNTIME_YAML.replace("max_sequence_length: 32",
                                                              f"max_sequence_length: {max_len}"))
        r = build(nexus, ws, tmp_path / f"out{max_len}")
        if max_len == 64 and form != "fixed":
            assert r.returncode == 0, r.stderr
            continue
        if max_len == 64:   # fixed at 64: the checks pass; the runtime pads to the batch's longest
            assert "max_sequence_length" not in r.stderr, r.stderr
            continue
        assert r.returncode == 2, r.stderr
        assert "max_sequence_length 128 is more than the model takes" in r.stderr, r.stderr
        assert "up to 64 tokens" in r.stderr and "max_sequence_length: 64 or less" in r.stderr
        assert ("input 'input_ids' is declared with 64 positions" if form == "fixed" else
                "position-embedding table 'pos.weight'") in r.stderr, r.stderr
        assert "selftest" not in r.stderr     # from the graph, not from running it
