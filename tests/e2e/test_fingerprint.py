"""Teacher fingerprinting through `nexus inspect STUDENT --teacher PATH`:
a student carrying a copied teacher tensor fails whatever its name, from
ONNX, PyTorch zip and safetensors teachers; unknown formats are errors."""
import json

import numpy as np
import pytest

import export_models as em
from conftest import run


def fp(nexus, student, *teachers):
    args = [nexus, "inspect", student, "--json"]
    for t in teachers:
        args += ["--teacher", t]
    return run(*args)


def teacher_with(tmp_path, kind, weights):
    if kind == "torch":
        path = tmp_path / "teacher.pt"
        em.torch_teacher_checkpoint(path, weights)
    elif kind == "safetensors":
        path = tmp_path / "teacher.safetensors"
        em.safetensors_file(path, weights)
    else:
        from onnx import TensorProto, helper, numpy_helper
        import onnx
        inits = [numpy_helper.from_array(v, k) for k, v in weights.items()]
        nodes = [helper.make_node("Identity", [k], [k + "_out"]) for k in weights]
        g = helper.make_graph(nodes, "teacher", [],
                              [helper.make_tensor_value_info(k + "_out", TensorProto.FLOAT, None)
                               for k in weights], inits)
        path = tmp_path / "teacher.onnx"
        onnx.save(helper.make_model(g), str(path))
    return path


@pytest.mark.parametrize("kind", ["torch", "safetensors", "onnx"])
def test_copied_teacher_embedding_fails(nexus, tmp_path, kind):
    big = np.random.default_rng(7).standard_normal((em.IN, em.HID * 16)).astype(np.float32)
    student = tmp_path / "student.onnx"
    # the student's only weight (8 x 256 floats = 8 KiB) is copied from the teacher
    from onnx import TensorProto, helper, numpy_helper
    import onnx
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "emb"], ["logits"])], "s",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, em.IN])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, em.HID * 16])],
        [numpy_helper.from_array(big, "emb")])
    onnx.save(helper.make_model(g), str(student))
    teacher = teacher_with(tmp_path, kind, {"teacher.embed.weight": big,
                                            "teacher.other": big[::-1].copy()})
    r = fp(nexus, student, teacher)
    assert r.returncode == 1, r.stderr
    rep = json.loads(r.stdout)
    assert [m["tensor"] for m in rep["shared_tensors"]] == ["emb"]
    assert rep["shared_tensors"][0]["bytes"] == big.nbytes
    assert rep["teacher_tensors"] == 2


def test_independent_student_passes(nexus, tmp_path):
    student = tmp_path / "s.onnx"
    em.distill_model(student)   # student tensors differ from the teacher file's
    teacher = teacher_with(tmp_path, "torch", {
        "w": np.random.default_rng(1).standard_normal((64, 64)).astype(np.float32)})
    r = fp(nexus, student, teacher)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["shared_tensors"] == []


def test_unknown_teacher_format_is_error(nexus, tmp_path):
    student = tmp_path / "s.onnx"
    em.distill_model(student)
    bad = tmp_path / "teacher.bin"
    bad.write_bytes(b"not a model at all" * 100)
    r = fp(nexus, student, bad)
    assert r.returncode == 3 and "teacher" in r.stderr


def test_legacy_pickle_is_error(nexus, tmp_path):
    import torch
    student = tmp_path / "s.onnx"
    em.distill_model(student)
    legacy = tmp_path / "teacher.pt"
    torch.save({"w": torch.zeros(4)}, str(legacy), _use_new_zipfile_serialization=False)
    r = fp(nexus, student, legacy)
    assert r.returncode == 3 and "legacy" in r.stderr


def test_truncated_zip_is_error(nexus, tmp_path):
    student = tmp_path / "s.onnx"
    em.distill_model(student)
    t = teacher_with(tmp_path, "torch", {"w": np.ones((64, 64), np.float32)})
    t.write_bytes(t.read_bytes()[:-30])
    r = fp(nexus, student, t)
    assert r.returncode == 3


@pytest.mark.parametrize("nbytes", [4096, 4100, 3 * 4096 + 12, 1 << 20])
def test_exact_copy_is_equal_not_pieces(nexus, tmp_path, nbytes):
    """A copied tensor is reported as equal, not as pieces, whatever its size
    relative to the chunker's: one chunk (4 KiB, no boundary inside, never
    looked up as a piece), a few, many.  Equality is the size and the
    sequence of chunk hashes, so this is what proves the first and last
    chunks (cut by the tensor's ends) count in it."""
    from onnx import TensorProto, helper, numpy_helper
    import onnx
    w = np.random.default_rng(nbytes).integers(0, 256, nbytes, dtype=np.uint8)
    other = np.random.default_rng(nbytes + 1).integers(0, 256, nbytes, dtype=np.uint8)
    student = tmp_path / "student.onnx"
    g = helper.make_graph(
        [helper.make_node("Identity", ["w"], ["y"]), helper.make_node("Identity", ["o"], ["z"])],
        "s", [], [helper.make_tensor_value_info("y", TensorProto.UINT8, None),
                  helper.make_tensor_value_info("z", TensorProto.UINT8, None)],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(other, "o")])
    onnx.save(helper.make_model(g), str(student))
    teacher = teacher_with(tmp_path, "safetensors", {"t.w": w})
    r = fp(nexus, student, teacher)
    assert r.returncode == 1, r.stderr
    shared = json.loads(r.stdout)["shared_tensors"]
    assert [(m["tensor"], m["partial"], m["bytes"]) for m in shared] == [("w", False, nbytes)]
