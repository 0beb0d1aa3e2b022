"""Models for the export and fingerprint tests (onnx 1.12, numpy, torch).

A distillation workspace typically exports one graph holding both networks:
teacher and student read the same input, and the graph has the outputs
`teacher_logits` and `logits`.  Exporting `logits` must leave the student
alone.  Every builder returns (ModelProto, student weights as numpy arrays)
so tests can compute the student's output with numpy.
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from models import _model, _save, _weights

IN, HID, OUT = 8, 16, 4


def student_forward(x, w):
    """The student of every combined model: logits = relu(x @ W1 + b1) @ W2."""
    h = np.maximum(x @ w["student_fc1.weight"] + w["student_fc1.bias"], 0)
    return h @ w["student_fc2.weight"]


def _student(seed=10, embed=None):
    w = {
        "student_fc1.weight": _weights((IN, HID), np.float32, seed),
        "student_fc1.bias": _weights((HID,), np.float32, seed + 1),
        "student_fc2.weight": _weights((HID, OUT), np.float32, seed + 2),
    }
    if embed is not None:
        w["student_fc1.weight"] = embed
    nodes = [
        helper.make_node("MatMul", ["x", "student_fc1.weight"], ["s_h0"], name="student_mm1",
                         doc_string="student layer 1"),
        helper.make_node("Add", ["s_h0", "student_fc1.bias"], ["s_h1"], name="student_add1"),
        helper.make_node("Relu", ["s_h1"], ["s_h2"], name="student_relu"),
        helper.make_node("MatMul", ["s_h2", "student_fc2.weight"], ["logits"],
                         name="student_mm2"),
    ]
    return nodes, w


def teacher_weights(seed=20):
    return {
        "teacher.encoder.weight": _weights((IN, 64), np.float32, seed),
        "teacher.head.weight": _weights((64, OUT), np.float32, seed + 1),
    }


def _teacher(w):
    return [
        helper.make_node("MatMul", ["x", "teacher.encoder.weight"], ["t_h"], name="teacher_mm1"),
        helper.make_node("Relu", ["t_h"], ["t_h2"], name="teacher_relu"),
        helper.make_node("MatMul", ["t_h2", "teacher.head.weight"], ["teacher_logits"],
                         name="teacher_mm2"),
    ]


def distill_model(path, dead=True, student_embed=None):
    """Combined teacher + student graph with provenance metadata, doc
    strings, a dead initializer and value_info on both branches."""
    snodes, sw = _student(embed=student_embed)
    tw = teacher_weights()
    inits = [numpy_helper.from_array(v, k) for k, v in list(tw.items()) + list(sw.items())]
    if dead:
        inits.append(numpy_helper.from_array(np.zeros((32, 32), np.float32), "unused_buffer"))
    g = helper.make_graph(
        _teacher(tw) + snodes, "distill_graph",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, IN])],
        [helper.make_tensor_value_info("teacher_logits", TensorProto.FLOAT, [1, OUT]),
         helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, OUT])],
        inits,
        value_info=[helper.make_tensor_value_info("t_h", TensorProto.FLOAT, [1, 64]),
                    helper.make_tensor_value_info("s_h2", TensorProto.FLOAT, [1, HID])],
        doc_string="joint graph exported from the distillation trainer")
    m = _model(g, metadata={"license": "MIT", "distillation.teacher": "bert-large",
                            "training_run": "run-42"},
               doc_string="distilled from teacher bert-large")
    _save(m, path)
    return m, sw


def if_teacher_model(path, student_uses_teacher=False):
    """Student plus an If whose then-branch reads the teacher's weight from
    the outer scope.  The If feeds `teacher_logits` only, unless
    student_uses_teacher, in which case it feeds `logits` too."""
    snodes, sw = _student()
    tw = teacher_weights()

    def branch(name, weight):
        return helper.make_graph(
            [helper.make_node("MatMul", ["x", weight], [f"{name}_out"], name=f"{name}_mm")],
            f"{name}_graph", [],
            [helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, [1, 64])])

    tail = [helper.make_node("If", ["cond"], ["t_h"], name="gate",
                             then_branch=branch("then", "teacher.encoder.weight"),
                             else_branch=branch("else", "teacher.encoder.weight")),
            helper.make_node("Relu", ["t_h"], ["t_h2"], name="t_relu"),
            helper.make_node("MatMul", ["t_h2", "teacher.head.weight"], ["teacher_logits"],
                             name="t_mm2")]
    outputs = [helper.make_tensor_value_info("teacher_logits", TensorProto.FLOAT, [1, OUT]),
               helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, OUT])]
    if student_uses_teacher:
        tail.append(helper.make_node("ReduceSum", ["teacher_logits"], ["mix"], keepdims=1,
                                     name="mix_sum"))
        snodes[-1] = helper.make_node("MatMul", ["s_h2", "student_fc2.weight"], ["pre"],
                                      name="student_mm2")
        snodes.append(helper.make_node("Add", ["pre", "mix"], ["logits"], name="student_mix"))
    inits = [numpy_helper.from_array(v, k) for k, v in list(tw.items()) + list(sw.items())]
    g = helper.make_graph(
        tail + snodes, "if_distill",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, IN]),
         helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        outputs, inits)
    _save(_model(g), path)
    return sw


def external_student(path, location=None):
    """The student with every initializer stored externally in `location`
    (relative to the model's directory)."""
    snodes, sw = _student()
    inits = [numpy_helper.from_array(v, k) for k, v in sw.items()]
    g = helper.make_graph(
        snodes, "student_ext",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, IN])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, OUT])], inits)
    m = _model(g)
    location = location or os.path.basename(str(path)) + ".data"
    _save(m, path, save_as_external_data=True, all_tensors_to_one_file=True,
          location=location, size_threshold=0)
    return sw


def set_external_location(path, location):
    """Rewrite every external_data location of the model at path (hostile
    locations for the tests) without touching the data."""
    m = onnx.load(str(path), load_external_data=False)
    for t in m.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = location
    onnx.save(m, str(path))


def torch_teacher_checkpoint(path, weights):
    """A PyTorch zip checkpoint (torch.save of a state dict) of weights."""
    import torch
    torch.save({k: torch.from_numpy(v.copy()) for k, v in weights.items()}, str(path))


def safetensors_file(path, weights):
    """A safetensors file (8-byte LE header length, JSON header, data)."""
    import json
    header, blobs, off = {}, [], 0
    for k, v in weights.items():
        b = np.ascontiguousarray(v).tobytes()
        header[k] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little") + h + b"".join(blobs))
