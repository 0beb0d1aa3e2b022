"""Left padding (issue #16): with tokenizer.json's padding.direction Left,
a batch is padded on the left with the oracle's ids and masks (the npm
`tokenizers` encodeBatch), position_ids count only the text's tokens
(Hugging Face's cumsum(mask) - 1), and a pooled embedding does not depend
on the other texts of its batch."""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import tokfixture  # noqa: E402
from test_runtime import H, jsonl, make_bundle, run_texts, token_ids, write_manifest  # noqa: E402
from test_tokenizer_parity import hf_available  # noqa: E402

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

HERE = pathlib.Path(__file__).parent
V = len(tokfixture.vocab())
POSITIONS = 32
# different lengths, so that all but the longest are padded in one batch:
# close enough that the padding costs less than another run (nexus_cli cuts
# a sorted window where it would cost more)
TEXTS = ["free money now", "x", "click now for lunch", "the model", "a"]


def echo_model(path, seed=5):
    """echo = [ids, mask, position_ids] as floats, [batch, 3, seq] (not per
    token, so its padding shows); hidden = E[ids] + P[position_ids]."""
    rnd = np.random.RandomState(seed)
    E = rnd.randn(V, H).astype(np.float32)
    P = rnd.randn(POSITIONS, H).astype(np.float32)
    nodes = []
    for name in ("input_ids", "attention_mask", "position_ids"):
        nodes += [helper.make_node("Cast", [name], [name + "_f"], to=TensorProto.FLOAT),
                  helper.make_node("Unsqueeze", [name + "_f", "ax1"], [name + "_u"])]
    nodes += [helper.make_node("Concat", ["input_ids_u", "attention_mask_u", "position_ids_u"],
                               ["echo"], axis=1),
              helper.make_node("Gather", ["E", "input_ids"], ["emb"]),
              helper.make_node("Gather", ["P", "position_ids"], ["pe"]),
              helper.make_node("Add", ["emb", "pe"], ["hidden"])]
    ins = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"])
           for n in ("input_ids", "attention_mask", "position_ids")]
    graph = helper.make_graph(
        nodes, "student", ins,
        [helper.make_tensor_value_info("echo", TensorProto.FLOAT, ["batch", 3, "seq"]),
         helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "seq", H])],
        [numpy_helper.from_array(E, "E"), numpy_helper.from_array(P, "P"),
         numpy_helper.from_array(np.array([1], dtype=np.int64), "ax1")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="nexus-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return E, P


def left_tokenizer():
    t = tokfixture.tokenizer_json()
    t["padding"] = {"strategy": "BatchLongest", "direction": "Left", "pad_to_multiple_of": None,
                    "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"}
    return t


def padded_bundle(root, task, yaml=""):
    cli = make_bundle(root, task=task, selftest=False, batch_size=8, max_len=POSITIONS,
                      extra_yaml=yaml)
    (root / "model/tokenizer/tokenizer.json").write_text(json.dumps(left_tokenizer()))
    weights = echo_model(root / "model/student_model.onnx")
    write_manifest(root)
    return cli, weights


def positions(mask):
    pos = np.cumsum(mask) - 1
    return np.where(np.array(mask) == 0, 1, pos)


def test_left_padding_matches_the_oracle(tmp_path):
    nm, why = hf_available()
    if not nm:
        pytest.skip(why)
    cli, _ = padded_bundle(tmp_path / "b", "raw")
    r = run_texts(cli, TEXTS)
    assert r.returncode == 0, r.stderr
    got = [np.array(x["outputs"]["echo"]).reshape(3, -1) for x in jsonl(r.stdout)]
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    subprocess.run(["node", str(HERE / "tok_oracle.js"), "encode",
                    str(tmp_path / "b/model/tokenizer/tokenizer.json"), str(inp), str(out)],
                   env=dict(os.environ, NODE_PATH=nm), check=True, capture_output=True,
                   timeout=120)
    want = jsonl(out.read_text())
    assert len({len(w["ids"]) for w in want}) == 1 and want[1]["attention_mask"][0] == 0
    for g, w in zip(got, want):
        assert g[0].tolist() == w["ids"]
        assert g[1].tolist() == w["attention_mask"]
        assert g[2].tolist() == positions(w["attention_mask"]).tolist()


@pytest.mark.parametrize("pooling", ["mean", "cls", "last"])
def test_left_padded_embeddings_do_not_depend_on_the_batch(tmp_path, pooling):
    cli, (E, P) = padded_bundle(tmp_path / "b", "embedding",
                                f"output: hidden\npooling: {pooling}\nnormalize: false\n")
    r = run_texts(cli, TEXTS)
    assert r.returncode == 0, r.stderr
    for got, ids in zip(jsonl(r.stdout), token_ids(cli, TEXTS)):
        x = E[np.array(ids)] + P[:len(ids)]
        want = {"mean": x.mean(axis=0), "cls": x[0], "last": x[-1]}[pooling]
        np.testing.assert_allclose(got["embedding"], want, atol=1e-5)
