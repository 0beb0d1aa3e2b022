"""The tokenizer engine through `nexus build` and the bundle's nexus_cli run:
a byte-level BPE student end to end, sentence pairs with token_type_ids fed
to a model that reads them, the truncation/max_sequence_length WARN, and a
tokenizer the runtime cannot reproduce refused at build naming its file and
JSON path."""
import json
import shutil

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import run
from test_build import build
from test_tok_matrix import matrix  # noqa: F401  (the fixture)
from workspace import make_workspace


def pair_student(rows, dim=8, seed=0):
    """Gather(E, ids) + Gather(T, type ids), masked mean, MatMul -> logits[batch, 2]."""
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((rows, dim), dtype=np.float32)
    typ = rng.standard_normal((2, dim), dtype=np.float32) * 4
    w = rng.standard_normal((dim, 2), dtype=np.float32)
    nodes = [
        helper.make_node("Gather", ["embeddings.weight", "input_ids"], ["e"]),
        helper.make_node("Gather", ["type.weight", "token_type_ids"], ["t"]),
        helper.make_node("Add", ["e", "t"], ["emb"]),
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "axis2"], ["mask_u"]),
        helper.make_node("Mul", ["emb", "mask_u"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["mask_u", "axis1"], ["count"], keepdims=0),
        helper.make_node("Div", ["summed", "count"], ["pooled"]),
        helper.make_node("MatMul", ["pooled", "classifier.weight"], ["logits"]),
    ]
    ins = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"])
           for n in ("input_ids", "attention_mask", "token_type_ids")]
    graph = helper.make_graph(
        nodes, "student", ins, [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                                              ["batch", 2])],
        [numpy_helper.from_array(emb, "embeddings.weight"),
         numpy_helper.from_array(typ, "type.weight"),
         numpy_helper.from_array(w, "classifier.weight"),
         numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"),
         numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1")])
    model = helper.make_model(graph, producer_name="pytorch",
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    return model.SerializeToString(), emb, typ, w


def workspace_with(tmp_path, tokdir, runtime_max=64):
    tok = json.loads((tokdir / "tokenizer.json").read_text(encoding="utf-8"))
    ids = [v for v in tok["model"]["vocab"].values()] if isinstance(
        tok["model"]["vocab"], dict) else range(len(tok["model"]["vocab"]))
    rows = max(max(ids), max((a["id"] for a in tok.get("added_tokens") or []), default=0)) + 1
    onnx_bytes, emb, typ, w = pair_student(rows)
    ws = make_workspace(tmp_path / "ws", student=onnx_bytes, tokenizer_files=(),
                        runtime_yaml=f"task: classification\nlabels: [ham, spam]\n"
                                     f"max_sequence_length: {runtime_max}\nbatch_size: 4\n"
                                     f"integrity: full\npython_packages: [numpy, onnxruntime]\n")
    shutil.copy(tokdir / "tokenizer.json", ws / "artifacts/tokenizer/tokenizer.json")
    return ws, (emb, typ, w)


def logits(weights, ids, types, mask):
    emb, typ, w = weights
    e = emb[ids] + typ[types]
    m = np.array(mask, dtype=np.float32)[:, None]
    return ((e * m).sum(0) / m.sum()) @ w


@pytest.mark.parametrize("name", ["bpe_roberta", "wp_uncased", "unigram_xlmr"])
def test_student_end_to_end_with_pairs(nexus, matrix, tmp_path, name):
    ws, weights = workspace_with(tmp_path, matrix[1][name])
    out = tmp_path / "out"
    r = build(nexus, ws, out)
    assert r.returncode == 0, r.stderr
    # truncation.max_length 128 in the file, max_sequence_length 64: WARN naming both
    assert "WARN" in r.stderr and "tokenizer.json" in r.stderr and "runtime.yaml" in r.stderr
    cli = out / "bin" / "nexus_cli"
    texts = [("free money, click now", "lunch at noon"), ("Héllo wörld 😀", "ok")]
    for a, b in texts:
        got = run(cli, "run", "--text", a, "--pair", b)
        assert got.returncode == 0, got.stderr
        res = json.loads(got.stdout)
        enc = run(cli, "tokenize", "--json", "--text", a, "--pair", b)
        assert enc.returncode == 0, enc.stderr
        e = json.loads(enc.stdout)
        assert 1 in e["type_ids"] or name == "bpe_roberta"   # RoBERTa's are all 0
        want = logits(weights, e["ids"], e["type_ids"], e["attention_mask"])
        assert np.allclose(res["outputs"]["logits"], want, atol=1e-4), (res, want)
        single = json.loads(run(cli, "run", "--text", a).stdout)
        assert single["outputs"]["logits"] != res["outputs"]["logits"]
    # text_pair lines go the same way
    lines = "".join(json.dumps({"text": a, "text_pair": b}) + "\n" for a, b in texts)
    got = run(cli, "run", "--input", "-", input=lines)
    assert got.returncode == 0, got.stderr
    assert len(got.stdout.splitlines()) == 2


def test_unreproducible_tokenizer_refused_at_build(nexus, matrix, tmp_path):
    ws, _ = workspace_with(tmp_path, matrix[1]["bpe_gpt2"])
    p = ws / "artifacts/tokenizer/tokenizer.json"
    tok = json.loads(p.read_text(encoding="utf-8"))
    tok["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        tok["pre_tokenizer"], {"type": "UnicodeScripts"}]}
    p.write_text(json.dumps(tok, ensure_ascii=False), encoding="utf-8")
    r = build(nexus, ws, tmp_path / "out")
    assert r.returncode == 2, r.stderr
    assert "artifacts/tokenizer/tokenizer.json" in r.stderr
    assert "pre_tokenizer.pretokenizers[1].type: 'UnicodeScripts'" in r.stderr
    assert "tokenizer, not the model" in r.stderr
