"""Export by subtraction, driven through `nexus inspect --export-to` and
`--json`'s export_preview.  Every exported model must pass the ONNX checker
and compute the student's outputs (checked against numpy)."""
import hashlib
import json
import os

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import export_models as em
import models
from conftest import run


def export(nexus, src, dst, *args):
    return run(nexus, "inspect", src, "--export-to", dst, "--json", *args)


def load_weights(path):
    m = onnx.load(str(path))
    return m, {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}


def check_student(path, expected_weights):
    m, w = load_weights(path)
    onnx.checker.check_model(m)
    assert set(w) == set(expected_weights)
    x = np.random.default_rng(0).standard_normal((1, em.IN)).astype(np.float32)
    np.testing.assert_array_equal(em.student_forward(x, w), em.student_forward(x, expected_weights))
    return m


def test_distill_graph_exports_student_alone(nexus, tmp_path):
    src, dst = tmp_path / "d.onnx", tmp_path / "s.onnx"
    _, sw = em.distill_model(src)
    r = export(nexus, src, dst, "--output", "logits", "--keep-metadata", "license")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    m = check_student(dst, sw)
    assert [n.name for n in m.graph.node] == ["student_mm1", "student_add1", "student_relu",
                                            "student_mm2"]
    assert [o.name for o in m.graph.output] == ["logits"]
    assert {p.key: p.value for p in m.metadata_props} == {"license": "MIT"}
    assert m.producer_name == "nexus" and m.doc_string == "" and m.graph.doc_string == ""
    assert all(not n.doc_string for n in m.graph.node)
    assert [v.name for v in m.graph.value_info] == ["s_h2"]
    removed = {(i["kind"], i["name"]) for i in rep["removed"]}
    assert ("initializer", "unused_buffer") in removed
    assert ("initializer", "teacher.encoder.weight") in removed
    assert ("metadata", "distillation.teacher") in removed
    assert ("output", "teacher_logits") in removed
    data = dst.read_bytes()
    assert rep["sha256"] == hashlib.sha256(data).hexdigest()
    assert rep["size"] == len(data)
    assert b"teacher" not in data.lower()


def test_default_outputs_keep_teacher_and_fail(nexus, tmp_path):
    src, dst = tmp_path / "d.onnx", tmp_path / "s.onnx"
    em.distill_model(src)
    r = export(nexus, src, dst)
    assert r.returncode == 1
    assert "teacher" in r.stderr and not dst.exists()


def test_unknown_output_is_config_error(nexus, tmp_path):
    src = tmp_path / "d.onnx"
    em.distill_model(src)
    r = export(nexus, src, tmp_path / "s.onnx", "--output", "nope")
    assert r.returncode == 2 and "'nope'" in r.stderr


def test_intermediate_output_with_value_info(nexus, tmp_path):
    src, dst = tmp_path / "d.onnx", tmp_path / "s.onnx"
    em.distill_model(src)
    r = export(nexus, src, dst, "--output", "s_h2")
    assert r.returncode == 0, r.stderr
    m = onnx.load(str(dst))
    onnx.checker.check_model(m)
    assert [o.name for o in m.graph.output] == ["s_h2"]
    assert [n.name for n in m.graph.node] == ["student_mm1", "student_add1", "student_relu"]


def test_unchanged_model_is_byte_identical(nexus, tmp_path):
    src, dst = tmp_path / "c.onnx", tmp_path / "out.onnx"
    models.constant_model(src)
    r = run(nexus, "inspect", src, "--export-to", dst, "--no-extract", "--json")
    assert r.returncode == 0, r.stderr
    # strip_metadata rewrites the producer: compare everything else through onnx
    a, b = onnx.load(str(src)), onnx.load(str(dst))
    a.producer_name, a.producer_version = "nexus", b.producer_version
    assert a.SerializeToString() == b.SerializeToString()


def test_dead_initializer_and_training_info_removed(nexus, tmp_path):
    src, dst = tmp_path / "t.onnx", tmp_path / "out.onnx"
    m = models.training_info_model(src)
    m.graph.initializer.append(numpy_helper.from_array(np.zeros(5, np.float32), "dead"))
    onnx.save(m, str(src))
    r = export(nexus, src, dst)
    assert r.returncode == 0, r.stderr
    out = onnx.load(str(dst))
    onnx.checker.check_model(out)
    assert len(out.training_info) == 0
    assert [t.name for t in out.graph.initializer] == []
    kinds = {i["kind"] for i in json.loads(r.stdout)["removed"]}
    assert {"training_info", "initializer"} <= kinds


def test_if_branch_with_teacher_dropped(nexus, tmp_path):
    src, dst = tmp_path / "if.onnx", tmp_path / "s.onnx"
    sw = em.if_teacher_model(src)
    r = export(nexus, src, dst, "--output", "logits")
    assert r.returncode == 0, r.stderr
    m = check_student(dst, sw)
    assert [i.name for i in m.graph.input] == ["x"]
    assert not any(n.op_type == "If" for n in m.graph.node)


def test_if_branch_outer_scope_use_counts(nexus, tmp_path):
    src, dst = tmp_path / "if.onnx", tmp_path / "s.onnx"
    em.if_teacher_model(src, student_uses_teacher=True)
    r = export(nexus, src, dst, "--output", "logits")
    assert r.returncode == 1, r.stderr
    assert "teacher.encoder.weight" in r.stderr or "teacher" in r.stderr


def test_if_model_keeps_outer_initializer(nexus, tmp_path):
    src, dst = tmp_path / "if.onnx", tmp_path / "out.onnx"
    models.if_model(src)
    r = export(nexus, src, dst)
    assert r.returncode == 0, r.stderr
    m = onnx.load(str(dst))
    onnx.checker.check_model(m)
    assert [t.name for t in m.graph.initializer] == ["outer_w"]


def test_forbidden_configured_term(nexus, tmp_path):
    src, dst = tmp_path / "d.onnx", tmp_path / "s.onnx"
    em.distill_model(src)
    r = export(nexus, src, dst, "--output", "logits", "--forbid", "FC2")
    assert r.returncode == 1 and "student_fc2.weight" in r.stderr


def test_training_op_refused(nexus, tmp_path):
    src = tmp_path / "g.onnx"
    from onnx import TensorProto, helper
    g = helper.make_graph(
        [helper.make_node("Gradient", ["x"], ["y"], domain="ai.onnx.preview.training",
                          xs=["x"], y="x")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13),
                                            helper.make_opsetid("ai.onnx.preview.training", 1)])
    onnx.save(m, str(src))
    r = export(nexus, src, tmp_path / "s.onnx")
    assert r.returncode == 1 and "training operator" in r.stderr


def test_small_external_tensors_come_inline(nexus, tmp_path):
    """Tensors under 64 KiB are put back inline (ONNX shape inference reads
    some of them); no data file is written for them."""
    ws = tmp_path / "ws"
    ws.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    sw = em.external_student(ws / "student.onnx", location="weights.bin")
    r = export(nexus, ws / "student.onnx", out / "student_model.onnx")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert not (out / "student_model.onnx.data").exists()
    assert rep["external_tensors"] == 0 and "data_sha256" not in rep
    m = check_student(out / "student_model.onnx", sw)
    assert all(t.data_location == onnx.TensorProto.DEFAULT and t.raw_data
               for t in m.graph.initializer)


def test_large_external_tensors_copied_into_one_file(nexus, tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    big = np.random.default_rng(3).standard_normal((200, 100)).astype(np.float32)  # 80 KB
    m = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("MatMul", ["x", "w1"], ["h"]),
         onnx.helper.make_node("MatMul", ["h", "w2"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 200])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 200])],
        [numpy_helper.from_array(big, "w1"), numpy_helper.from_array(big.T.copy(), "w2")]))
    onnx.save(m, str(ws / "student.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    r = export(nexus, ws / "student.onnx", out / "student_model.onnx")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    data = (out / "student_model.onnx.data").read_bytes()
    assert rep["data_sha256"] == hashlib.sha256(data).hexdigest()
    assert rep["external_tensors"] == 2
    got = onnx.load(str(out / "student_model.onnx"))
    onnx.checker.check_model(got)
    w = {t.name: numpy_helper.to_array(t) for t in got.graph.initializer}
    np.testing.assert_array_equal(w["w1"], big)
    np.testing.assert_array_equal(w["w2"], big.T)
    m = onnx.load(str(out / "student_model.onnx"), load_external_data=False)
    for t in m.graph.initializer:
        kv = {e.key: e.value for e in t.external_data}
        assert kv["location"] == "student_model.onnx.data"
        assert int(kv["offset"]) % 4096 == 0


@pytest.mark.parametrize("location", ["../x.bin", "/etc/passwd", "link.bin", "sub/../w.bin"])
def test_external_data_hostile_location(nexus, tmp_path, location):
    ws = tmp_path / "ws"
    ws.mkdir()
    em.external_student(ws / "student.onnx", location="weights.bin")
    (tmp_path / "x.bin").write_bytes(b"\0" * 4096)
    os.symlink("weights.bin", ws / "link.bin")
    em.set_external_location(ws / "student.onnx", location)
    dst = tmp_path / "s.onnx"
    r = export(nexus, ws / "student.onnx", dst)
    assert r.returncode == 3, r.stderr
    assert "external data" in r.stderr and not dst.exists()
    prev = json.loads(run(nexus, "inspect", ws / "student.onnx", "--json").stdout)
    assert prev["export_preview"]["error"]["code"] == "unsafe"


def test_external_data_range_past_end(nexus, tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    em.external_student(ws / "student.onnx", location="weights.bin")
    with open(ws / "weights.bin", "r+b") as f:
        f.truncate(100)
    r = export(nexus, ws / "student.onnx", tmp_path / "s.onnx")
    assert r.returncode == 3 and "only 100 bytes" in r.stderr


def test_truncated_model_fails_with_offset(nexus, tmp_path):
    src = tmp_path / "d.onnx"
    em.distill_model(src)
    data = src.read_bytes()
    src.write_bytes(data[: len(data) // 2])
    r = export(nexus, src, tmp_path / "s.onnx", "--output", "logits")
    assert r.returncode == 3 and "@" in r.stderr or "offset" in r.stderr or "byte" in r.stderr
    assert not (tmp_path / "s.onnx").exists()


def test_dead_sparse_initializer_with_external_values_not_copied(nexus, tmp_path):
    """A sparse initializer nothing uses is dropped before its data is read:
    its external values (80 KB, above the inline limit) must not reach the
    data file, where they would be unreferenced bytes of a dropped tensor."""
    ws = tmp_path / "ws"
    ws.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    dead = np.full(20000, 7.25, np.float32)  # 80 KB, a pattern easy to look for
    (ws / "weights.bin").write_bytes(dead.tobytes())
    vals = onnx.TensorProto(name="dead_sparse", data_type=onnx.TensorProto.FLOAT,
                            dims=[20000], data_location=onnx.TensorProto.EXTERNAL)
    for k, v in (("location", "weights.bin"), ("offset", "0"), ("length", str(dead.nbytes))):
        e = vals.external_data.add()
        e.key, e.value = k, v
    idx = numpy_helper.from_array(np.arange(20000, dtype=np.int64), "dead_sparse_idx")
    g = onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["x"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])], [],
        sparse_initializer=[onnx.helper.make_sparse_tensor(vals, idx, [20000])])
    m = onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(ws / "student.onnx"))
    r = export(nexus, ws / "student.onnx", out / "student_model.onnx")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert ("initializer", "dead_sparse") in {(i["kind"], i["name"]) for i in rep["removed"]}
    assert rep["external_tensors"] == 0
    assert not (out / "student_model.onnx.data").exists()
    got = onnx.load(str(out / "student_model.onnx"))
    onnx.checker.check_model(got)
    assert len(got.graph.sparse_initializer) == 0
