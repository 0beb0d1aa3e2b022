"""The weights check (TRV-3): the model's own bytes, strings, initializers and
external data. (Regrouped by check from the red-team files by
scripts/dev/regroup_tests.py.)
"""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import bundle_fixture as bf
import workspace as ws
from onnx_smuggling import (b64_chunks, field, identity_chain, sink_nodes, smuggle_model_bytes,
    teacher_file)
from smuggling import blob_b64, external_model, fail_codes, floats, string_tensor
from token_payloads import (HEX_LETTERS, dead_constant_decode, dead_constant_student,
    official_build_refuses, teacher_bytes)
from verify_helpers import check_status, codes, expect_fail, torch_zip, verify, with_model


def test_unreferenced_external_data_file(nexus, bundle):
    """A data file the model does not name is a channel for anything."""
    bundle.smuggle("model/student_model.onnx.data", floats(4096).tobytes())
    assert "unexpected-path" in fail_codes(nexus, bundle)


@pytest.mark.parametrize("make", [
    lambda: bf.student_model(metadata={"notes": blob_b64()}),
    lambda: bf.student_model(doc_string=blob_b64()),
    lambda: bf.student_model(extra_nodes=[helper.make_node(
        "Identity", ["logits"], ["x"], name="tag", note=blob_b64())]),
    lambda: bf.student_model(extra_nodes=[helper.make_node(
        "Identity", ["logits"], ["x"], name="tag", note=floats(10240).tobytes())]),
    lambda: bf.student_model(extra_nodes=[helper.make_node(
        "Constant", [], ["c"], name="k", value=string_tensor("labels"))]),
], ids=["metadata-base64", "doc-base64", "attribute-base64", "attribute-raw-bytes",
        "string-constant"])
def test_onnx_blob_in_a_string_field(nexus, bundle, make):
    with_model(bundle, make())
    expect_fail(nexus, bundle, "onnx-string-blob")


def test_onnx_short_strings_are_fine(nexus, bundle):
    with_model(bundle, bf.student_model(metadata={"license": "MIT", "version": "1.2"}))
    rc, rep = verify(nexus, bundle)
    assert codes(rep, "FAIL") == set(), rep


def test_onnx_big_constant_multiplied_by_zero(nexus, bundle):
    """4 MiB of weights in a Constant node, referenced (x 0) so no check
    calls it unreferenced: the parameters do not explain the bytes."""
    big = numpy_helper.from_array(floats(1 << 20).reshape(1024, 1024), "k")
    nodes = [helper.make_node("Constant", [], ["kc"], name="k", value=big),
             helper.make_node("ReduceSum", ["kc"], ["ks"], name="ks", keepdims=0),
             helper.make_node("Mul", ["ks", "zero"], ["kz"], name="kz")]
    zero = numpy_helper.from_array(np.zeros((), np.float32), "zero")
    with_model(bundle, bf.student_model(extra_nodes=nodes, extra_initializers=[zero]))
    rep = expect_fail(nexus, bundle, "model-size-unexplained")
    assert check_status(rep, "size") == "FAIL"


def test_onnx_big_initializer_multiplied_by_zero_with_teacher(nexus, bundle, tmp_path):
    """Counted as parameters; ReduceSum of it computes from constants only,
    which an exporter folds (constant-subgraph), and --teacher names it."""
    w = floats(1 << 16, seed=3)
    t = numpy_helper.from_array(w.reshape(256, 256), "t")
    nodes = [helper.make_node("ReduceSum", ["t"], ["ts"], name="ts", keepdims=0),
             helper.make_node("Mul", ["ts", "zero"], ["tz"], name="tz")]
    zero = numpy_helper.from_array(np.zeros((), np.float32), "zero")
    m = bf.student_model(extra_nodes=nodes, extra_initializers=[t, zero])
    bundle.meta["parameters"] = bf.human(bf.parameters(m))
    with_model(bundle, m)
    rc, rep = verify(nexus, bundle)
    assert codes(rep, "FAIL") == {"constant-subgraph"}, rep
    teacher = bf.student_model(extra_initializers=[numpy_helper.from_array(
        w.reshape(256, 256), "layer7")])
    tp = tmp_path / "teacher.onnx"
    tp.write_bytes(teacher.SerializeToString())
    expect_fail(nexus, bundle, "teacher-tensor-copied", "--teacher", str(tp))


def test_onnx_raw_data_longer_than_its_dims(nexus, bundle):
    """A 2-element tensor carrying 400 KiB of raw_data: stored bytes are not
    parameters, only what the elements can take is."""
    t = TensorProto(name="b", data_type=TensorProto.FLOAT, dims=[bf.LABELS])
    t.raw_data = floats(100 << 10).tobytes()
    g = bf.student_graph()
    g.initializer[2].CopyFrom(t)
    with_model(bundle, bf.student_model(graph=g))
    expect_fail(nexus, bundle, "model-size-unexplained")


@pytest.mark.parametrize("extra", [1 << 20, 32 << 10], ids=["1MiB", "32KiB"])
def test_onnx_external_file_with_bytes_no_tensor_reads(nexus, bundle, extra):
    """A referenced data file is not sniffed: what no tensor reads is a
    channel as wide as the file."""
    external_model(bundle, floats(extra // 4).tobytes())
    expect_fail(nexus, bundle, "onnx-external-unread")


def test_onnx_external_file_read_exactly_is_fine(nexus, bundle):
    external_model(bundle, b"")
    rc, rep = verify(nexus, bundle)
    assert rc == 0, rep["findings"]


def test_onnx_external_file_zero_alignment_padding_is_fine(nexus, bundle):
    external_model(bundle, b"\0" * 4000, offset=4096)
    rc, rep = verify(nexus, bundle)
    assert rc == 0, rep["findings"]


def test_onnx_external_file_zero_gap_longer_than_alignment(nexus, bundle):
    """Zeros carry nothing, but a gap no exporter leaves is not padding."""
    external_model(bundle, b"", offset=128 << 10)
    expect_fail(nexus, bundle, "onnx-external-unread")


def test_onnx_external_file_data_in_the_alignment_gap(nexus, bundle):
    external_model(bundle, b"", offset=4096)
    data = bytearray(bundle.path("model/student_model.onnx.data").read_bytes())
    data[100:108] = b"smuggled"
    bundle.smuggle("model/student_model.onnx.data", bytes(data))
    expect_fail(nexus, bundle, "onnx-external-unread")


def test_initializer_defined_twice(nexus, bundle):
    """Two initializers named `embedding`: a node "uses" both by name, ONNX
    Runtime keeps one, and the other is a tensor no node reads."""
    m = bf.student_model()
    hidden = numpy_helper.from_array(floats(len(bf.VOCAB) * bf.HIDDEN, 3)
                                     .reshape(len(bf.VOCAB), bf.HIDDEN), "embedding")
    m.graph.initializer.insert(0, hidden)
    bundle.meta["parameters"] = bf.human(bf.parameters(m))
    bundle.smuggle("model/student_model.onnx", m.SerializeToString())
    rep = expect_fail(nexus, bundle, "onnx-unreferenced-initializer")
    assert any("embedding" in f["message"] for f in rep["findings"])


def test_initializer_shadowed_by_a_node_output(nexus, bundle):
    m = bf.student_model()
    m.graph.initializer.append(numpy_helper.from_array(floats(4096, 4), "pooled"))
    bundle.meta["parameters"] = bf.human(bf.parameters(m))
    bundle.smuggle("model/student_model.onnx", m.SerializeToString())
    expect_fail(nexus, bundle, "onnx-unreferenced-initializer")


@pytest.mark.parametrize("make", [lambda t: {"doc_string": t},
                                  lambda t: {"doc_string": "", "note": t}],
                         ids=["doc_strings", "string_attributes"])
def test_free_text_carrying_a_tensor(nexus, bundle, make):
    """Each node may bring 1 KiB of names and attributes; doc strings (and
    metadata, string attributes) are free text that must not grow with the
    node count: 160 KiB of base64 floats cut into 900-byte doc strings or
    string attributes of live nodes is a tensor."""
    nodes, last = identity_chain("b", b64_chunks(30000, 900), make=make)
    g = bf.student_graph()
    g.node[3].input[1] = last
    g.node.extend(nodes)
    bundle.smuggle("model/student_model.onnx", bf.student_model(graph=g).SerializeToString())
    expect_fail(nexus, bundle, "onnx-string-blob")


def test_external_tensors_aliasing_one_range(nexus, bundle):
    """Two tensors reading the same bytes of an external file explain them
    once: counted twice, they let the model hide as much again in names."""
    big = floats(64 << 10, 8)                      # 256 KiB in the data file
    m = bf.student_model()
    g = m.graph
    names = b64_chunks(45000, 4000)                # 240 KiB of base64 in node names
    prev = "b"
    for i, n in enumerate(names):
        g.node.append(helper.make_node("Identity", [prev], [f"b{i}"], name=n))
        prev = f"b{i}"
    g.node[3].input[1] = prev
    for t in ("big", "alias"):
        init = g.initializer.add()
        init.name, init.data_type = t, TensorProto.FLOAT
        init.dims.extend([big.size])
        init.data_location = TensorProto.EXTERNAL
        for k, v in (("location", "student_model.onnx.data"), ("offset", "0"),
                     ("length", str(big.nbytes))):
            e = init.external_data.add()
            e.key, e.value = k, v
        g.node.extend(sink_nodes(t, to_float=False) + [
            helper.make_node("Add", ["logits0" if t == "big" else "logits1", t + "_z"],
                             ["logits1" if t == "big" else "logits"], name=t + "_add")])
    g.initializer.append(numpy_helper.from_array(np.zeros((), np.float32), "zero"))
    g.node[3].output[0] = "logits0"
    bundle.write("model/student_model.onnx.data", big.tobytes())
    bundle.meta["parameters"] = bf.human(bf.parameters(m))
    bundle.smuggle("model/student_model.onnx", m.SerializeToString())
    rep = expect_fail(nexus, bundle, "model-size-unexplained")
    # the base64 in the names is also over the leak budget on its own
    assert codes(rep, "FAIL") == {"model-size-unexplained", "budget-exceeded"}, rep["findings"]


def test_attribute_tensor_given_twice(nexus, bundle, tmp_path):
    """protobuf merges a singular message field given twice: a Constant whose
    `value` comes in two halves is, for ONNX Runtime, one tensor holding
    both (repeated values concatenate), so each half alone fingerprinted
    as nothing.  The reader refuses a second t/g/sparse_tensor."""
    arr = floats(4096, 31)
    teacher = teacher_file(tmp_path, arr)
    raw = arr.tobytes()
    half = len(raw) // 2
    t1 = field(1, 0, arr.size) + field(2, 0, TensorProto.FLOAT) + field(4, 2, raw[:half])
    t2 = field(4, 2, raw[half:])
    attr = field(1, 2, b"value") + field(20, 0, 4) + field(5, 2, t1) + field(5, 2, t2)
    const = field(1 + 1, 2, b"k") + field(3, 2, b"k") + field(4, 2, b"Constant") + field(5, 2, attr)
    zero = numpy_helper.from_array(np.zeros((), np.float32), "zero")
    m = bf.student_model(extra_initializers=[zero], extra_nodes=sink_nodes("k", to_float=False))
    graph = m.graph.SerializeToString() + field(1, 2, const)
    rest = type(m)()
    rest.CopyFrom(m)
    rest.ClearField("graph")
    smuggle_model_bytes(bundle, rest.SerializeToString() + field(7, 2, graph), bf.parameters(m))
    rep = expect_fail(nexus, bundle, "onnx-invalid", "--teacher", teacher)


def test_many_external_locations_do_not_stall_verify(nexus, bundle):
    """200,000 external initializers, each naming another data file: the
    size check groups tensors by file once (it compared every pair, ~4e10
    string compares, minutes of CPU) and fails the model in seconds."""
    from onnx import TensorProto
    m = bf.student_model()
    for i in range(200_000):
        t = m.graph.initializer.add(name=f"x{i}", data_type=TensorProto.FLOAT, dims=[1],
                                    data_location=TensorProto.EXTERNAL)
        e = t.external_data.add()
        e.key, e.value = "location", f"d{i}.bin"
    bundle.smuggle("model/student_model.onnx", m.SerializeToString())
    expect_fail(nexus, bundle, "onnx-external-outside", timeout=30)


def test_insider_dead_constant_node_refused(nexus, tmp_path, release_key_file):
    root = ws.make_workspace(tmp_path / "ws")
    raw = teacher_bytes() + teacher_bytes(6)[:4 << 10]
    dead_constant_student(root, raw[:62 << 10])   # Constant tensors: 64 KiB in all
    letters = raw[62 << 10:].hex().translate(str.maketrans("0123456789abcdef", HEX_LETTERS))
    with open(root / "README.md", "a") as f:
        f.write(" ".join(letters[i:i + 6] for i in range(0, len(letters), 6)) + "\n")
    assert dead_constant_decode(root) == raw
    official_build_refuses(nexus, root, tmp_path, release_key_file, "budget-exceeded")


@pytest.mark.parametrize("make", [
    lambda: bf.student_model(metadata={"source": "Teacher-v2"}),
    lambda: bf.student_model(doc_string="distilled from the teacher"),
    lambda: bf.student_model(producer="teacher-exporter"),
    lambda: bf.student_model(graph_name="teacher_graph"),
], ids=["metadata", "doc-string", "producer", "graph-name"])
def test_onnx_teacher_strings(nexus, bundle, make):
    with_model(bundle, make())
    expect_fail(nexus, bundle, "onnx-teacher-reference")


def test_onnx_teacher_node_and_initializer_names(nexus, bundle):
    m = bf.student_model()
    m.graph.node[2].name = "teacher_head"
    m.graph.initializer[1].name = "teacher.W"
    m.graph.node[2].input[1] = "teacher.W"
    with_model(bundle, m)
    rep = expect_fail(nexus, bundle, "onnx-teacher-reference")
    assert len([f for f in rep["findings"] if f["code"] == "onnx-teacher-reference"]) >= 2


def test_onnx_unreferenced_initializer(nexus, bundle):
    spare = numpy_helper.from_array(np.ones((4, 4), np.float32), "spare")
    with_model(bundle, bf.student_model(extra_initializers=[spare]))
    expect_fail(nexus, bundle, "onnx-unreferenced-initializer")


def test_onnx_teacher_subgraph_in_if_branch(nexus, bundle):
    def branch(name):
        return helper.make_graph(
            [helper.make_node("Identity", ["logits"], ["o_" + name], name=name)], name + "_g", [],
            [helper.make_tensor_value_info("o_" + name, TensorProto.FLOAT, [1, 2])])
    cond = numpy_helper.from_array(np.array(True), "cond")
    node = helper.make_node("If", ["cond"], ["if_out"], name="maybe",
                            then_branch=branch("teacher_block"), else_branch=branch("plain"))
    with_model(bundle, bf.student_model(extra_initializers=[cond], extra_nodes=[node]))
    rep = expect_fail(nexus, bundle, "onnx-teacher-reference")
    assert any("teacher_block" in f["message"] for f in rep["findings"])


def test_onnx_constant_attribute(nexus, bundle):
    const = helper.make_node("Constant", [], ["c"], name="k",
                             value=numpy_helper.from_array(np.ones(2, np.float32), "teacher_logit_scale"))
    with_model(bundle, bf.student_model(extra_nodes=[const]))
    expect_fail(nexus, bundle, "onnx-teacher-reference")


def test_onnx_string_attribute(nexus, bundle):
    node = helper.make_node("Identity", ["logits"], ["x"], name="tag", note="soft_targets")
    with_model(bundle, bf.student_model(extra_nodes=[node]))
    expect_fail(nexus, bundle, "onnx-teacher-reference")


def test_onnx_training_info(nexus, bundle):
    m = bf.student_model()
    ti = m.training_info.add()
    ti.algorithm.CopyFrom(helper.make_graph([], "algo", [], []))
    with_model(bundle, m)
    expect_fail(nexus, bundle, "onnx-training-info")


def test_onnx_training_op_domain(nexus, bundle):
    node = helper.make_node("Gradient", ["logits"], ["g"], name="grad",
                            domain="ai.onnx.preview.training", xs=["W"], y="logits")
    m = bf.student_model(extra_nodes=[node],
                         opsets=[helper.make_opsetid("", 13),
                                 helper.make_opsetid("ai.onnx.preview.training", 1)])
    with_model(bundle, m)
    expect_fail(nexus, bundle, "onnx-training-op")


@pytest.mark.parametrize("location", ["../../etc/passwd", "/etc/passwd", "missing.data"])
def test_onnx_external_data_outside(nexus, bundle, location):
    m = bf.student_model()
    w = m.graph.initializer[1]
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", "64")):
        e = w.external_data.add()
        e.key, e.value = k, v
    with_model(bundle, m)
    expect_fail(nexus, bundle, "onnx-external-outside")


def test_onnx_external_data_inside_is_fine(nexus, bundle):
    m = bf.student_model()
    w = m.graph.initializer[1]
    data = w.raw_data
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "student_model.onnx.data"), ("offset", "0"), ("length", str(len(data)))):
        e = w.external_data.add()
        e.key, e.value = k, v
    bundle.write("model/student_model.onnx.data", data)
    with_model(bundle, m)
    rc, rep = verify(nexus, bundle, "--no-sandbox")
    assert rc == 0, rep["findings"]


@pytest.mark.parametrize("tail", [b"\xfa\x07\x03abc", b"\x00\x00\x00"], ids=["unknown-field", "garbage"])
def test_onnx_unknown_fields_or_trailing_bytes(nexus, bundle, tail):
    bundle.smuggle("model/student_model.onnx", bundle.model.SerializeToString() + tail)
    rc, rep = verify(nexus, bundle)
    assert rc == 1
    assert codes(rep, "FAIL") & {"onnx-unknown-fields", "onnx-invalid"}, rep["findings"]


def test_model_not_onnx(nexus, bundle):
    bundle.smuggle("model/student_model.onnx", torch_zip())
    expect_fail(nexus, bundle, "onnx-invalid")
