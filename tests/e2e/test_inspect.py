"""`nexus inspect` on models built with tests/e2e/models.py."""
import json
import time

import numpy as np
import pytest

import models  # noqa: E402
from conftest import run


def inspect(nexus, path):
    r = run(nexus, "inspect", path, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_mlp_summary(nexus, tmp_path):
    m = models.mlp_classifier(tmp_path / "m.onnx", vocab=500, hidden=32, layers=3, labels=3,
                              metadata={"license": "MIT", "author": "me"})
    d = inspect(nexus, tmp_path / "m.onnx")
    expected = 500 * 32 + (32 * 32 + 32) * 2 + 32 * 3 + 3 + 1 + 1 + 1
    assert d["parameters"] == expected == models.param_count(m)
    assert d["opsets"] == {"ai.onnx": models.OPSET}
    assert d["ir_version"] == 8
    assert d["producer"] == "nexus-tests"
    assert d["metadata"] == {"license": "MIT", "author": "me"}
    assert d["quantization"] == "none"
    assert d["external_data"] == []
    assert d["training_info"] is False
    assert d["unknown_fields"] == 0
    assert d["file_size"] == (tmp_path / "m.onnx").stat().st_size
    assert [i["name"] for i in d["inputs"]] == ["input_ids", "attention_mask"]
    assert d["inputs"][0] == {"name": "input_ids", "dtype": "int64", "shape": ["batch", 16]}
    assert d["outputs"] == [{"name": "logits", "dtype": "float", "shape": ["batch", 3]}]
    assert d["nodes"] == len(m.graph.node)
    # every weight byte is accounted for and lies inside the file
    assert expected * 4 <= d["weight_bytes"] < d["file_size"]


def test_human_output(nexus, tmp_path):
    m = models.mlp_classifier(tmp_path / "m.onnx", vocab=20000, hidden=64)
    r = run(nexus, "inspect", tmp_path / "m.onnx")
    assert r.returncode == 0
    assert models.param_count(m) == 1284293
    assert "1.3M (1284293)" in r.stdout
    assert "input_ids: int64 [batch, 16]" in r.stdout
    assert "ai.onnx=13" in r.stdout


def test_fp16_and_int8(nexus, tmp_path):
    m = models.mlp_classifier(tmp_path / "h.onnx", dtype=np.float16)
    d = inspect(nexus, tmp_path / "h.onnx")
    assert d["quantization"] == "fp16"
    assert d["parameters"] == models.param_count(m)
    models.int8_model(tmp_path / "q.onnx")
    assert inspect(nexus, tmp_path / "q.onnx")["quantization"] == "int8"
    models.int8_model(tmp_path / "c.onnx", dequantize=False)
    assert inspect(nexus, tmp_path / "c.onnx")["quantization"] == "int8"


def test_if_subgraph_initializers_counted(nexus, tmp_path):
    m = models.if_model(tmp_path / "if.onnx", then_size=5, else_size=7, outer_size=3)
    d = inspect(nexus, tmp_path / "if.onnx")
    assert d["parameters"] == 15 == models.param_count(m)
    assert d["graphs"] == 3
    assert d["inputs"] == [{"name": "cond", "dtype": "bool", "shape": []}]


def test_constant_attribute_not_a_parameter(nexus, tmp_path):
    models.constant_model(tmp_path / "c.onnx", size=6, unreferenced="stale")
    d = inspect(nexus, tmp_path / "c.onnx")
    assert d["parameters"] == 9  # the 3x3 unreferenced initializer, not the Constant
    assert d["tensors"] == 2


def test_training_info(nexus, tmp_path):
    models.training_info_model(tmp_path / "t.onnx", size=4)
    d = inspect(nexus, tmp_path / "t.onnx")
    assert d["training_info"] is True
    assert d["parameters"] == 4
    assert "training_info: present" in run(nexus, "inspect", tmp_path / "t.onnx").stdout


def test_external_data_listed(nexus, tmp_path):
    models.external_data_model(tmp_path / "e.onnx", size=1000)
    d = inspect(nexus, tmp_path / "e.onnx")
    assert d["parameters"] == 1000
    assert d["external_data"] == [{"tensor": "big_w", "location": "e.onnx.data",
                                   "offset": 0, "length": 4000, "scope": "graph"}]
    assert d["weight_bytes"] == 4000
    assert d["file_size"] < 4000


@pytest.mark.parametrize("cut", [1, 10, 100, -1, -3])
def test_truncated_file_exits_3(nexus, tmp_path, cut):
    models.mlp_classifier(tmp_path / "m.onnx", vocab=50, hidden=8)
    data = (tmp_path / "m.onnx").read_bytes()
    (tmp_path / "t.onnx").write_bytes(data[:cut] if cut > 0 else data[:len(data) + cut])
    r = run(nexus, "inspect", tmp_path / "t.onnx", "--json")
    assert r.returncode == 3
    # --json: the error is the one document on stdout (nexus(1), JSON OUTPUT)
    doc = json.loads(r.stdout)
    assert doc["schema"] == "nexus.error.v1" and doc["error"]["code"] == "format"
    assert doc["error"]["path"] == str(tmp_path / "t.onnx") and doc["error"]["offset"] >= 0
    assert r.stderr.startswith(f"nexus inspect: error: {tmp_path / 't.onnx'} @")


@pytest.mark.parametrize("content", [b"hello world\n", b"PK\x03\x04" + bytes(60), b""])
def test_not_onnx_exits_3(nexus, tmp_path, content):
    (tmp_path / "x.onnx").write_bytes(content)
    r = run(nexus, "inspect", tmp_path / "x.onnx")
    assert r.returncode == 3
    assert "nexus inspect: error:" in r.stderr


def test_missing_file_and_usage(nexus, tmp_path):
    r = run(nexus, "inspect", tmp_path / "nope.onnx")
    assert r.returncode == 3
    assert "cannot open" in r.stderr
    assert run(nexus, "inspect").returncode == 2


def test_large_model_is_fast(nexus, tmp_path):
    m = models.big_model(tmp_path / "big.onnx", mbytes=50)
    best = None
    for _ in range(3):
        t0 = time.perf_counter()
        d = inspect(nexus, tmp_path / "big.onnx")
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    assert d["parameters"] == models.param_count(m) == 50 * 1024 * 1024 // 4
    # process start-up included; reading 50 MB would take far longer
    assert best < 0.1, best


def test_sparse_initializer(nexus, tmp_path):
    m = models.sparse_model(tmp_path / "s.onnx", dense=(10, 10), nnz=7)
    d = inspect(nexus, tmp_path / "s.onnx")
    assert d["parameters"] == 7 == models.param_count(m)
    # values (7 floats) + indices (7 int64)
    assert d["weight_bytes"] == 7 * 4 + 7 * 8
    assert [i["name"] for i in d["inputs"]] == ["x"]
