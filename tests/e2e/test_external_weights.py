"""Weights in a data file beside the model (nexus.yaml export.external_data).

ONNX Runtime maps page-aligned external data instead of copying it out of
the protobuf, so a bundle whose large initializers live in
model/student_model.onnx.data starts in milliseconds with the weights shared
from the page cache.  These tests build such bundles from both kinds of
source (inline weights moved out, external weights carried over), and check
that each one verifies, runs in the sandbox and computes what the
single-file bundle computes."""
import json
import os

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from conftest import run
from workspace import make_workspace, student_onnx

EPOCH = "1700000000"
TEXTS = ["free money, click now", "lunch at noon tomorrow?", "hello world"]
ROWS = 4096           # embedding 4096 x 8 fp32 = 128 KiB: over the 64 KiB threshold
DATA = "model/student_model.onnx.data"


def build(nexus, ws, out, *extra):
    return run(nexus, "build", ws, "-o", out, *extra,
               env=dict(os.environ, SOURCE_DATE_EPOCH=EPOCH))


def outputs(bundle):
    r = run(bundle / "bin/nexus_cli", "run", *sum((["--text", t] for t in TEXTS), []))
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def verify(nexus, bundle):
    r = run(nexus, "verify", "--json", bundle)
    rep = json.loads(r.stdout)
    assert r.returncode == 0 and rep["verdict"] in ("PASS", "WARN"), rep["findings"]
    return rep


def tensors(model_path):
    m = onnx.load(str(model_path), load_external_data=False)
    return {t.name: t for t in m.graph.initializer}


def externals(model_path):
    out = {}
    for name, t in tensors(model_path).items():
        if t.data_location == onnx.TensorProto.EXTERNAL:
            out[name] = {e.key: e.value for e in t.external_data}
    return out


def weights(model_path):
    m = onnx.load(str(model_path))
    return {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}


@pytest.fixture(scope="module")
def reference(nexus, tmp_path_factory):
    """The single-file bundle of the same student: what every variant must compute."""
    d = tmp_path_factory.mktemp("ref")
    ws = make_workspace(d / "ws", student=student_onnx(ROWS))
    assert build(nexus, ws, d / "b").returncode == 0
    assert not (d / "b" / DATA).exists()     # small model: auto keeps it one file
    return {"outputs": outputs(d / "b"), "weights": weights(d / "b/model/student_model.onnx")}


def test_external_source_builds_verifies_and_runs(nexus, tmp_path, reference):
    ws = make_workspace(tmp_path / "ws", student=student_onnx(ROWS))
    m = onnx.load(str(ws / "artifacts/student.onnx"))
    onnx.save(m, str(ws / "artifacts/student.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="student.onnx.data", size_threshold=0)
    b = tmp_path / "b"
    r = build(nexus, ws, b)
    assert r.returncode == 0, r.stderr
    # the large tensor stays in the data file, the small ones come inline
    # (ONNX shape inference must read an axes input such as axis2)
    assert set(externals(b / "model/student_model.onnx")) == {"embeddings.weight"}
    verify(nexus, b)
    assert outputs(b) == reference["outputs"]


def test_always_moves_large_initializers_page_aligned(nexus, tmp_path, reference):
    ws = make_workspace(tmp_path / "ws", student=student_onnx(ROWS),
                        config={"export": "{external_data: always}"})
    b = tmp_path / "b"
    r = build(nexus, ws, b)
    assert r.returncode == 0, r.stderr
    model = b / "model/student_model.onnx"
    ext = externals(model)
    assert set(ext) == {"embeddings.weight"}          # the small ones stay inline
    e = ext["embeddings.weight"]
    assert e["location"] == "student_model.onnx.data" and int(e["offset"]) % 4096 == 0
    assert int(e["length"]) == ROWS * 8 * 4
    assert (b / DATA).stat().st_size == int(e["offset"]) + int(e["length"])
    assert os.path.getsize(model) < 4096
    onnx.checker.check_model(str(model))
    got = weights(model)
    assert set(got) == set(reference["weights"])
    for k, v in reference["weights"].items():
        np.testing.assert_array_equal(got[k], v)
    man = json.loads((b / "manifest.json").read_text())
    assert DATA in [f["path"] for f in man["files"]]
    verify(nexus, b)
    assert outputs(b) == reference["outputs"]
    # still byte-identical when rebuilt
    assert build(nexus, ws, tmp_path / "b2").returncode == 0
    for rel in ("manifest.json", "model/student_model.onnx", DATA):
        assert (b / rel).read_bytes() == (tmp_path / "b2" / rel).read_bytes(), rel


def test_auto_moves_weights_of_a_large_student_only(nexus, tmp_path):
    rows = (64 << 20) // 32 + 64                      # just over 64 MiB of fp32
    for mode, external in (("auto", True), ("never", False)):
        ws = make_workspace(tmp_path / mode, student=student_onnx(rows),
                            config={"export": "{external_data: %s}" % mode})
        b = tmp_path / f"b_{mode}"
        r = build(nexus, ws, b)
        assert r.returncode == 0, r.stderr
        assert (b / DATA).exists() == external, mode
        assert ("embeddings.weight" in externals(b / "model/student_model.onnx")) == external


def test_inspect_export_to_follows_the_same_rule(nexus, tmp_path):
    src = tmp_path / "s.onnx"
    src.write_bytes(student_onnx(ROWS))
    out = tmp_path / "out"
    out.mkdir()
    r = run(nexus, "inspect", src, "--export-to", out / "student_model.onnx",
            "--external-data", "always", "--json")
    assert r.returncode == 0, r.stderr
    assert set(externals(out / "student_model.onnx")) == {"embeddings.weight"}
    onnx.checker.check_model(str(out / "student_model.onnx"))


def test_text_export_copies_the_same_bytes_without_hashing(nexus, tmp_path):
    """Without --json the data file is copied (copy_file_range) and not
    hashed; it must hold exactly what the hashed copy holds."""
    src = tmp_path / "s.onnx"
    src.write_bytes(student_onnx(ROWS))
    got = {}
    for mode in ("json", "text"):
        out = tmp_path / mode
        out.mkdir()
        r = run(nexus, "inspect", src, "--export-to", out / "student_model.onnx",
                "--external-data", "always", *(["--json"] if mode == "json" else []))
        assert r.returncode == 0, r.stderr
        got[mode] = (out / "student_model.onnx.data").read_bytes()
        if mode == "json":
            import hashlib
            assert json.loads(r.stdout)["data_sha256"] == hashlib.sha256(got[mode]).hexdigest()
        else:
            assert f"{len(got[mode])} bytes in student_model.onnx.data" in r.stdout
    assert got["json"] == got["text"] and len(got["text"]) == ROWS * 8 * 4


@pytest.mark.parametrize("value", ["sometimes", "[always]", "yes"])
def test_bad_external_data_value_is_config_error(nexus, tmp_path, value):
    ws = make_workspace(tmp_path / "ws", config={"export": "{external_data: %s}" % value})
    r = build(nexus, ws, tmp_path / "b")
    assert r.returncode == 2, r.stderr
    assert "nexus.yaml" in r.stderr and "external_data" in r.stderr
    assert not (tmp_path / "b").exists()
