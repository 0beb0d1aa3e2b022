"""A model whose outputs are NaN or infinite must not pass (issue 15, item 1).

0/0 is computed at run time, so nothing in the model file looks wrong: the
build must refuse the golden NaN, verify's TRV-5 must refuse the re-run, and
`nexus_cli run` must answer an error for the input instead of nulls.
"""
import json
import os

import onnx
import pytest
from onnx import helper

import bundle_fixture as bf
from conftest import RUNTIME_DIR, run
from test_build import build
from smuggling import sandbox_ok
from workspace import make_workspace, student_onnx

needs_sandbox = pytest.mark.skipif(not sandbox_ok(), reason="bubblewrap cannot run here")


def nan_at_run_time(graph):
    """logits = (x - x) / (x - x): NaN for every input, from finite weights."""
    last = graph.node[-1]
    last.output[0] = "pre_logits"
    graph.node.extend([
        helper.make_node("Sub", ["pre_logits", "pre_logits"], ["zero"], name="zero"),
        helper.make_node("Div", ["zero", "zero"], ["logits"], name="nan"),
    ])
    return graph


@needs_sandbox
def test_build_refuses_a_student_that_outputs_nan(nexus, tmp_path):
    model = onnx.load_from_string(student_onnx())
    nan_at_run_time(model.graph)
    ws = make_workspace(tmp_path / "ws", student=model.SerializeToString())
    r = build(nexus, ws, tmp_path / "out")
    assert r.returncode == 1, r.stderr
    assert "non-finite-output" in r.stderr
    assert "output 'logits' index 0" in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()
    r = build(nexus, ws, tmp_path / "out", "--json")
    doc = json.loads(r.stdout)
    assert r.returncode == 1 and doc["schema"] == "nexus.error.v1"
    assert doc["error"]["code"] == "check" and "non-finite-output" in doc["error"]["message"]


@pytest.fixture
def nan_bundle(tmp_path):
    """A hand-made bundle on the real runtime: finite golden numbers, a
    model that computes NaN."""
    b = bf.Bundle(tmp_path / "nexus_bundle_v1", RUNTIME_DIR,
                  model=bf.student_model(nan_at_run_time(bf.student_graph())))
    yield b
    b.unlock()


@needs_sandbox
def test_verify_fails_a_nan_rerun(nexus, nan_bundle):
    env = dict(os.environ, NEXUS_RUNTIME_DIR=str(RUNTIME_DIR))
    r = run(nexus, "verify", "--json", nan_bundle.root, env=env, timeout=120)
    assert r.returncode == 1, r.stderr
    rep = json.loads(r.stdout)
    bad = [f for f in rep["findings"] if f["code"] == "non-finite-output"]
    assert bad and bad[0]["severity"] == "FAIL" and bad[0]["check"] == "functional", rep
    assert "output 'logits' index 0" in bad[0]["message"]


def test_run_prints_an_error_not_nulls(nan_bundle):
    cli = nan_bundle.path("bin/nexus_cli")
    r = run(cli, "run", "--bundle", nan_bundle.root, "--text", "free money", "--text", "lunch")
    assert r.returncode == 3, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(lines) == 2
    for res in lines:
        assert res["code"] == "non-finite-output" and res["output"] == "logits"
        assert res["index"] == 0 and "logits" in res["error"]
        assert "scores" not in res and "outputs" not in res


def test_verify_fails_a_null_golden_output(nexus, tmp_path):
    """Bundles built before the fix recorded NaN as null: the code check
    refuses them even when TRV-5 is off."""
    b = bf.Bundle(tmp_path / "b", bf.make_runtime(tmp_path / "rt"))
    try:
        b.smuggle("config/selftest.json", json.dumps(
            {"schema": "nexus.selftest.v1", "tolerance": 1e-4,
             "cases": [{"text": "free money", "outputs": {"logits": [0.5, None]}}]}))
        env = dict(os.environ, NEXUS_RUNTIME_DIR=str(b.runtime_dir))
        r = run(nexus, "verify", "--json", "--no-sandbox", b.root, env=env)
        assert r.returncode == 1, r.stderr
        bad = [f for f in json.loads(r.stdout)["findings"] if f["code"] == "non-finite-output"]
        assert bad and "output 'logits' index 1" in bad[0]["message"], r.stdout
    finally:
        b.unlock()


@needs_sandbox
def test_nexus_run_json_lists_the_error(nexus, nan_bundle):
    r = run(nexus, "run", nan_bundle.root, "--text", "free money", "--json", timeout=120)
    assert r.returncode == 3, r.stderr
    results = json.loads(r.stdout)
    assert [res["code"] for res in results] == ["non-finite-output"]
