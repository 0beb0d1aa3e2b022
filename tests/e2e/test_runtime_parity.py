"""nexus_cli against onnxruntime-node on the same ids (issue #17): the
BERT-family graphs of bench/gen_transformer.py (DistilBERT-shaped
classifier, MiniLM-shaped embedder; 32 wide, random weights), the same
texts: labels identical, logits and pooled, normalised embeddings within
1e-5.  The node side is bench/ort_node_bench.js.

Runs when node and the npm package onnxruntime-node are found
($NEXUS_BENCH_NPM/node_modules, ~/.cache/nexus/bench/npm/node_modules as
bench/run.py installs it, or NODE_PATH); otherwise skipped with the reason.
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from conftest import ROOT, run  # noqa: E402
from test_runtime import TEXTS, jsonl, make_bundle, write_manifest  # noqa: E402

pytest.importorskip("torch")


def ort_node():
    cache = os.environ.get("NEXUS_CACHE", os.path.expanduser("~/.cache/nexus"))
    cands = [os.environ.get("NEXUS_BENCH_NPM"), os.path.join(cache, "bench/npm"),
             cache]   # scripts/setup.sh unpacks the oracle into $NEXUS_CACHE/node_modules
    cands = [c and os.path.join(c, "node_modules") for c in cands]
    cands += os.environ.get("NODE_PATH", "").split(":")
    if not shutil.which("node"):
        return None
    for c in cands:
        if c and (pathlib.Path(c) / "onnxruntime-node" / "package.json").is_file():
            return c
    return None


@pytest.mark.parametrize("shape", ["tiny-distilbert", "tiny-minilm"])
def test_same_answers_as_onnxruntime_node(tmp_path, shape):
    nm = ort_node()
    if not nm:
        pytest.skip("node or the npm package onnxruntime-node not found "
                    "(bench/run.py --only realrt installs it into ~/.cache/nexus/bench/npm)")
    model = tmp_path / "m.onnx"
    subprocess.run(["/usr/bin/python3", str(ROOT / "bench/gen_transformer.py"), str(model), shape],
                   check=True, capture_output=True)
    if shape == "tiny-distilbert":
        cli = make_bundle(tmp_path / "b", selftest=False, batch_size=4,
                          extra_yaml="scores: list\n")
        y = tmp_path / "b" / "config" / "runtime.yaml"
        y.write_text(y.read_text().replace("labels: [ham, spam, other]", "labels: [ham, spam]"))
    else:
        cli = make_bundle(tmp_path / "b", task="embedding", selftest=False, batch_size=4,
                          extra_yaml="output: last_hidden_state\n")
    shutil.copyfile(model, tmp_path / "b" / "model" / "student_model.onnx")
    write_manifest(tmp_path / "b")
    texts = TEXTS + ["hello world " * k for k in range(1, 12)]
    r = run(cli, "run", *sum((["--text", t] for t in texts), []))
    assert r.returncode == 0, r.stderr
    ours = jsonl(r.stdout)
    ids = tmp_path / "ids.jsonl"
    t = run(cli, "tokenize", *sum((["--text", x] for x in texts), []))
    ids.write_text(t.stdout)
    out = tmp_path / "node.json"
    n = subprocess.run(["node", str(ROOT / "bench/ort_node_bench.js"), "throughput", str(model),
                        str(ids), "1", "1", str(out)], capture_output=True, text=True,
                       env=dict(os.environ, NODE_PATH=nm, NEXUS_BENCH_POOL="mean"))
    assert n.returncode == 0, n.stderr
    theirs = json.loads(out.read_text())["logits"]
    assert len(ours) == len(theirs) == len(texts)
    for a, b in zip(ours, theirs):
        if shape == "tiny-distilbert":
            np.testing.assert_allclose(a["outputs"]["logits"], b, atol=1e-5)
            assert a["label"] == ("ham", "spam")[int(np.argmax(b))]
        else:
            np.testing.assert_allclose(a["embedding"], b, atol=1e-5)
