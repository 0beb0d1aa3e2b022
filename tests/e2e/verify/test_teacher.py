"""The weights check (TRV-3): teacher tensors found in the student, in any
encoding or cut into pieces. (Regrouped by check from the red-team files by
scripts/dev/regroup_tests.py.)
"""
import os

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import bundle_fixture as bf
from conftest import run
from onnx_smuggling import (ENCODINGS, fp16_in_int32_data, model_with_initializer, sink_nodes,
    smuggle_model_bytes, split_student, teacher_file, tensor_bytes)
from smuggling import floats
from verify_helpers import codes, expect_fail, verify


@pytest.mark.parametrize("enc", ENCODINGS)
def test_teacher_tensor_copied_in_another_encoding(nexus, bundle, tmp_path, enc):
    """The fingerprint compares a tensor's contents, not how the protobuf
    happens to encode them: a teacher's float16 table written as int32_data
    varints (what onnx.helper.make_tensor does without raw=True), floats
    written unpacked or in two runs, or raw_data after a decoy field is
    still the teacher's tensor."""
    dtype, make, encode = ENCODINGS[enc]
    arr = make()
    teacher = teacher_file(tmp_path, arr)
    zero = numpy_helper.from_array(np.zeros((), np.float32), "zero")
    m = bf.student_model(extra_nodes=sink_nodes("E2"), extra_initializers=[zero])
    data = model_with_initializer(m, tensor_bytes("E2", dtype, arr.shape, encode(arr)))
    smuggle_model_bytes(bundle, data, bf.parameters(m) + arr.size)
    rc, rep = verify(nexus, bundle)
    # a used, declared tensor: only the canonical form (the initializer is
    # appended out of field order, and most encodings are not nexus's own)
    # fails it without the teacher
    assert codes(rep, "FAIL") == {"onnx-not-canonical"}, rep["findings"]
    rep = expect_fail(nexus, bundle, "teacher-tensor-copied", "--teacher", teacher)
    assert any("'E2'" in f["message"] for f in rep["findings"]
               if f["code"] == "teacher-tensor-copied"), rep["findings"]


def test_teacher_in_typed_fields_matches_raw_student(nexus, bundle, tmp_path):
    """The other way round: a teacher written with typed fields still
    fingerprints by its contents."""
    arr = floats(4096, 21).astype(np.float16).reshape(512, 8)
    teacher = tmp_path / "big.onnx"
    g = helper.make_graph([helper.make_node("Identity", ["w"], ["o"])], "t", [],
                          [helper.make_tensor_value_info("o", TensorProto.FLOAT16, None)], [])
    t = helper.make_model(g)
    teacher.write_bytes(model_with_initializer(
        t, tensor_bytes("w", TensorProto.FLOAT16, arr.shape, fp16_in_int32_data(arr))))
    zero = numpy_helper.from_array(np.zeros((), np.float32), "zero")
    m = bf.student_model(extra_nodes=sink_nodes("E2"),
                         extra_initializers=[zero, numpy_helper.from_array(arr, "E2")])
    bundle.meta["parameters"] = bf.human(bf.parameters(m))
    bundle.smuggle("model/student_model.onnx", m.SerializeToString())
    expect_fail(nexus, bundle, "teacher-tensor-copied", "--teacher", teacher)


@pytest.mark.parametrize("cut", ["halves", "odd-split", "padded"])
def test_teacher_tensor_cut_into_pieces(nexus, bundle, tmp_path, cut):
    """A teacher layer split in two initializers (at a row or at any
    element) and concatenated at run time, or stored inside a larger tensor,
    is no tensor byte-identical to the teacher's, yet it is the teacher's
    data: the fingerprint also compares content-defined chunks."""
    w = floats(256 * 64, 41).reshape(256, 64)        # a 64 KiB teacher layer
    teacher = teacher_file(tmp_path, w)
    flat = w.ravel()
    if cut == "halves":
        parts = [flat[:flat.size // 2], flat[flat.size // 2:]]
    elif cut == "odd-split":
        parts = [flat[:5003], flat[5003:]]
    else:
        parts = [np.concatenate([floats(777, 42), flat, floats(1001, 43)])]
    m = split_student(parts)
    bundle.meta["parameters"] = bf.human(bf.parameters(m))
    bundle.smuggle("model/student_model.onnx", m.SerializeToString())
    rc, rep = verify(nexus, bundle)
    assert codes(rep, "FAIL") == set(), rep["findings"]
    rep = expect_fail(nexus, bundle, "teacher-tensor-copied", "--teacher", teacher)


def test_independent_tensors_share_no_chunks(nexus, bundle, tmp_path):
    """Zeros and constant runs (padding rows, unit norms) are in every model:
    they are not a copy."""
    w = floats(256 * 64, 44).reshape(256, 64)
    w[:16] = 0.0
    w[100:120] = 1.0
    teacher = teacher_file(tmp_path, w)
    s = floats(256 * 64, 45).reshape(256, 64)
    s[:16] = 0.0
    s[200:220] = 1.0
    m = split_student([s.ravel()])
    bundle.meta["parameters"] = bf.human(bf.parameters(m))
    bundle.smuggle("model/student_model.onnx", m.SerializeToString())
    rc, rep = verify(nexus, bundle, "--teacher", teacher)
    assert codes(rep, "FAIL") == set(), rep["findings"]


def test_copied_teacher_tensor(nexus, bundle, tmp_path):
    teacher = tmp_path / "teacher.onnx"
    teacher.write_bytes(bf.student_model(seed=0, graph_name="big").SerializeToString())
    expect_fail(nexus, bundle, "teacher-tensor-copied", "--teacher", teacher)


def test_independent_teacher_is_fine(nexus, bundle, tmp_path):
    teacher = tmp_path / "teacher.onnx"
    teacher.write_bytes(bf.student_model(seed=7, graph_name="big").SerializeToString())
    rc, rep = verify(nexus, bundle, "--teacher", teacher)
    assert rc == 0 and "teacher-tensor-copied" not in codes(rep), rep["findings"]


def test_unreadable_teacher_is_an_environment_error(nexus, bundle, tmp_path):
    env = dict(os.environ, NEXUS_RUNTIME_DIR=str(bundle.runtime_dir))
    r = run(nexus, "verify", "--teacher", tmp_path / "none.onnx", bundle.root, env=env)
    assert r.returncode == 3
