"""Fingerprints in the exporter's form (issue #22 item 6).

torch.onnx.export writes a Linear weight transposed relative to the
checkpoint, and a served student is often float16 or bfloat16: a teacher
layer copied in any of those forms, from a .pt or an .onnx teacher, is
`teacher-tensor-copied`.
"""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import bundle_fixture as bf
from test_canonical import ZERO, model_with
from onnx_smuggling import field, sink_nodes, smuggle_model_bytes, tensor_bytes
from smuggling import floats
from verify_helpers import codes, expect_fail, verify


W = floats(64 * 96, 21).reshape(64, 96)     # a Linear weight [out, in], 24 KiB


def onnx_teacher(tmp_path):
    g = helper.make_graph([helper.make_node("Identity", ["fc.weight"], ["o"])], "t", [],
                          [helper.make_tensor_value_info("o", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(W, "fc.weight")])
    p = tmp_path / "big.onnx"
    p.write_bytes(helper.make_model(g).SerializeToString())
    return p


def pt_teacher(tmp_path):
    import torch
    p = tmp_path / "big.pt"
    torch.save({"fc.weight": torch.from_numpy(W.copy()), "fc.bias": torch.zeros(64)}, str(p))
    return p


def bf16(a):
    """float32 -> bfloat16 bits, round to nearest even (as torch casts)."""
    import torch
    return torch.from_numpy(np.ascontiguousarray(a)).to(torch.bfloat16).view(torch.int16).numpy()


FORMS = {
    "transposed": lambda: (TensorProto.FLOAT, W.T.copy().tobytes(), W.T.shape),
    "float16": lambda: (TensorProto.FLOAT16, W.astype(np.float16).tobytes(), W.shape),
    "bfloat16": lambda: (TensorProto.BFLOAT16, bf16(W).tobytes(), W.shape),
    "float16-transposed": lambda: (TensorProto.FLOAT16, W.T.astype(np.float16).tobytes(),
                                   W.T.shape),
    "bfloat16-transposed": lambda: (TensorProto.BFLOAT16, bf16(W.T).tobytes(), W.T.shape),
}


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("teacher", ["onnx", "pt"])
def test_teacher_layer_in_exporter_form(nexus, bundle, tmp_path, form, teacher):
    dtype, raw, shape = FORMS[form]()
    m = bf.student_model(extra_nodes=sink_nodes("E2"), extra_initializers=[ZERO])
    t = tensor_bytes("E2", dtype, shape, [field(9, 2, raw)])
    smuggle_model_bytes(bundle, model_with(m, tensor=t), bf.parameters(m) + W.size)
    rc, rep = verify(nexus, bundle)
    assert codes(rep, "FAIL") == set(), rep["findings"]   # nothing else names it
    path = onnx_teacher(tmp_path) if teacher == "onnx" else pt_teacher(tmp_path)
    rep = expect_fail(nexus, bundle, "teacher-tensor-copied", "--teacher", path)
    msgs = [f["message"] for f in rep["findings"] if f["code"] == "teacher-tensor-copied"]
    assert any("'E2'" in m for m in msgs), rep["findings"]
    # the finding says which form was found
    cast = "as bfloat16" if "bfloat16" in form else "as float16" if "float16" in form else None
    assert any(("once transposed" in m) == ("transposed" in form) and
               (cast is None or cast in m) for m in msgs), msgs


def test_unrelated_matrix_of_the_same_size_is_not_found(nexus, bundle, tmp_path):
    other = floats(64 * 96, 99).reshape(96, 64)
    m = bf.student_model(extra_nodes=sink_nodes("E2"), extra_initializers=[ZERO])
    t = tensor_bytes("E2", TensorProto.FLOAT, other.shape, [field(9, 2, other.tobytes())])
    smuggle_model_bytes(bundle, model_with(m, tensor=t), bf.parameters(m) + other.size)
    rc, rep = verify(nexus, bundle, "--teacher", pt_teacher(tmp_path))
    assert codes(rep, "FAIL") == set(), rep["findings"]
