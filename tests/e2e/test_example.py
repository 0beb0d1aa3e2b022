"""The bundled example workspace (examples/spam-distill): it builds, passes
TRV with a signature, and the bundle's runtime predicts what the training
script's own evaluation predicted (artifacts/test_sample.jsonl)."""
import json
import os
import pathlib

import pytest

from conftest import ROOT, run

WS = ROOT / "examples" / "spam-distill"
SAMPLE = WS / "artifacts" / "test_sample.jsonl"


@pytest.fixture(scope="module")
def bundle(nexus, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("example")
    assert run(nexus, "keygen", "-o", tmp / "rel").returncode == 0
    env = dict(os.environ, SOURCE_DATE_EPOCH="1700000000")
    r = run(nexus, "build", WS, "-o", tmp / "nexus_bundle_v1", "--key", tmp / "rel.key",
            "--json", env=env)
    assert r.returncode == 0, r.stderr
    return tmp / "nexus_bundle_v1", tmp / "rel.pub", json.loads(r.stdout)


def test_example_builds_and_strips_what_it_should(bundle):
    b, _, res = bundle
    removed = {(x["module"]) for x in res["removed_imports"]}
    assert removed == {"teacher_model", "training_modules.distill"}
    assert ("metadata", "distilled_from") in {(i["what"], i["name"])
                                              for i in res["export"]["removed"]}
    names = " ".join(str(p.relative_to(b)) for p in b.rglob("*")).lower()
    for bad in ("teacher", "checkpoint", "optimizer", "training", ".pt"):
        assert bad not in names


def test_example_passes_trv_with_no_warning(nexus, bundle):
    b, pub, _ = bundle
    r = run(nexus, "verify", b, "--json", "--require-signature", "--pubkey", pub,
            "--teacher", WS / "artifacts/teacher.onnx",
            "--teacher", WS / "checkpoints/teacher.pt")
    rep = json.loads(r.stdout)
    assert r.returncode == 0, rep
    assert rep["verdict"] == "PASS", rep["findings"]
    assert {c["id"]: c["status"] for c in rep["checks"]} == {
        "integrity": "PASS", "signature": "PASS", "policy": "PASS", "allowlist": "PASS",
        "code": "PASS", "budget": "PASS", "weights": "PASS", "size": "PASS", "functional": "PASS"}
    assert not [f for f in rep["findings"] if f["severity"] not in ("info", "INFO")]
    # the example's own 4 MiB limit is the one verify applies (signed policy)
    assert any(f["code"] == "policy-differs" and "max_model_bytes 4194304" in f["message"]
               for f in rep["findings"]), rep["findings"]


def test_example_predictions_match_training_evaluation(bundle):
    b, _, _ = bundle
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    inp = "".join(json.dumps({"text": row["text"]}) + "\n" for row in rows)
    r = run(b / "bin/nexus_cli", "run", "--input", "-", input=inp)
    assert r.returncode == 0, r.stderr
    outs = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(outs) == len(rows)
    for row, out in zip(rows, outs):
        assert out["label"] == row["label"], row["id"]
        for got, want in zip(out["outputs"]["logits"], row["logits"]):
            assert abs(got - want) < 1e-4, row["id"]
