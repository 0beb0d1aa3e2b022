"""The size check (TRV-4): the model's size against its parameters and the
threshold. (Regrouped by check from the red-team files by
scripts/dev/regroup_tests.py.)
"""
from onnx import TensorProto, helper

import bundle_fixture as bf
from verify_helpers import codes, expect_fail, verify, with_model


def test_model_larger_than_its_parameters(nexus, bundle):
    # names each under onnx-string-blob's 4 KiB (free text such as metadata
    # is capped in all by the weights check too): only the size names them
    g = bf.student_graph()
    g.value_info.extend(helper.make_tensor_value_info(f"{i:04d}" + "x" * 4000, TensorProto.FLOAT,
                                                      [1]) for i in range(256))
    with_model(bundle, bf.student_model(graph=g))
    rep = expect_fail(nexus, bundle, "model-size-unexplained")
    # value_info entries for values no node computes are not canonical either
    assert codes(rep, "FAIL") == {"model-size-unexplained", "onnx-not-canonical"}


def test_metadata_larger_than_free_text_allows(nexus, bundle):
    with_model(bundle, bf.student_model(metadata={f"k{i}": "x" * 4000 for i in range(256)}))
    expect_fail(nexus, bundle, "onnx-string-blob")


def test_model_over_threshold(nexus, bundle):
    expect_fail(nexus, bundle, "model-too-large", "--max-model-bytes", "1000")
    rc, _ = verify(nexus, bundle, "--max-model-bytes", "1MiB")
    assert rc == 0
