"""Small ONNX models for the end-to-end tests, built with onnx 1.12.

Each function builds one model, writes it to `path` (a str or pathlib.Path)
and returns the ModelProto, so that tests can compute expected values
(parameter counts with numpy, names, metadata) from what was written.
Use /usr/bin/python3: it has onnx and numpy.
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13


def param_count(model):
    """Exact number of initializer elements over all graphs of a model
    (main graph, subgraphs in attributes, training_info), sparse included."""
    total = 0

    def graph(g):
        nonlocal total
        for t in g.initializer:
            total += int(np.prod(t.dims, dtype=np.uint64)) if len(t.dims) else 1
        for s in g.sparse_initializer:
            v = s.values
            total += int(np.prod(v.dims, dtype=np.uint64)) if len(v.dims) else 1
        for n in g.node:
            for a in n.attribute:
                if a.HasField("g"):
                    graph(a.g)
                for sub in a.graphs:
                    graph(sub)

    graph(model.graph)
    for t in model.training_info:
        graph(t.initialization)
        graph(t.algorithm)
    return total


def _save(model, path, **kw):
    onnx.save(model, str(path), **kw)
    return model


def _model(graph, metadata=None, opset=OPSET, producer="nexus-tests", **kw):
    m = helper.make_model(graph, producer_name=producer,
                          opset_imports=[helper.make_opsetid("", opset)], **kw)
    m.ir_version = 8
    for k, v in (metadata or {}).items():
        helper.set_model_props(m, dict({p.key: p.value for p in m.metadata_props}, **{k: v}))
    return m


def _weights(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        return rng.integers(-100, 100, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def mlp_classifier(path, vocab=1000, hidden=64, layers=2, labels=2, seq=16,
                   dtype=np.float32, metadata=None, doc_string="", producer="nexus-tests",
                   name_prefix="", extra_initializer=None):
    """A text classifier: input_ids, attention_mask [batch, seq] int64 ->
    logits [batch, labels].  Embedding (Gather) + masked mean + `layers`
    dense layers with ReLU.  Weights are stored in `dtype` (float32 or
    float16; float16 weights are Cast back to float32).  `extra_initializer`
    (a name) adds an initializer no node uses."""
    p = name_prefix
    inits = [numpy_helper.from_array(_weights((vocab, hidden), dtype, 1), p + "embed.weight")]
    nodes = [
        helper.make_node("Gather", [p + "embed.weight", "input_ids"], ["emb_raw"], name=p + "embed"),
    ]
    cur = "emb_raw"
    if dtype != np.float32:
        nodes.append(helper.make_node("Cast", [cur], ["emb"], to=TensorProto.FLOAT))
        cur = "emb"
    nodes += [
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "axes_2"], ["mask3"]),
        helper.make_node("Mul", [cur, "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axes_1"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["mask_f", "axes_1"], ["count"], keepdims=1),
        helper.make_node("Max", ["count", "one"], ["count1"]),
        helper.make_node("Div", ["summed", "count1"], ["h0"]),
    ]
    inits += [numpy_helper.from_array(np.array([2], np.int64), "axes_2"),
              numpy_helper.from_array(np.array([1], np.int64), "axes_1"),
              numpy_helper.from_array(np.array([1.0], np.float32), "one")]
    cur, width = "h0", hidden
    for i in range(layers):
        out_w = labels if i == layers - 1 else hidden
        w, b = f"{p}fc{i}.weight", f"{p}fc{i}.bias"
        inits += [numpy_helper.from_array(_weights((width, out_w), dtype, 10 + i), w),
                  numpy_helper.from_array(_weights((out_w,), dtype, 20 + i), b)]
        if dtype != np.float32:
            nodes += [helper.make_node("Cast", [w], [w + "_f"], to=TensorProto.FLOAT),
                      helper.make_node("Cast", [b], [b + "_f"], to=TensorProto.FLOAT)]
            w, b = w + "_f", b + "_f"
        mm, out = f"mm{i}", ("logits" if i == layers - 1 else f"h{i + 1}")
        nodes.append(helper.make_node("MatMul", [cur, w], [mm], name=f"{p}fc{i}"))
        if i == layers - 1:
            nodes.append(helper.make_node("Add", [mm, b], [out]))
        else:
            nodes += [helper.make_node("Add", [mm, b], [f"pre{i}"]),
                      helper.make_node("Relu", [f"pre{i}"], [out])]
        cur, width = out, out_w
    if extra_initializer:
        inits.append(numpy_helper.from_array(_weights((4, 4), np.float32, 99), extra_initializer))
    g = helper.make_graph(
        nodes, "student",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", seq]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", seq])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", labels])],
        inits, doc_string=doc_string)
    m = _model(g, metadata, producer=producer)
    m.doc_string = doc_string
    return _save(m, path)


def if_model(path, then_size=5, else_size=7, outer_size=3):
    """x [n] float, cond bool -> y: an If whose branches each hold their own
    initializer (then: `then_size`, else: `else_size` elements) and use an
    outer initializer `outer_w` (`outer_size` elements) from the main graph."""
    outer = numpy_helper.from_array(np.ones(outer_size, np.float32), "outer_w")

    def branch(name, size, seed):
        w = numpy_helper.from_array(_weights((size,), np.float32, seed), f"{name}_w")
        return helper.make_graph(
            [helper.make_node("ReduceSum", [f"{name}_w"], [f"{name}_s"], keepdims=1),
             helper.make_node("ReduceSum", ["outer_w"], [f"{name}_o"], keepdims=1),
             helper.make_node("Add", [f"{name}_s", f"{name}_o"], [f"{name}_out"])],
            f"{name}_graph", [],
            [helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, [1])], [w])

    node = helper.make_node("If", ["cond"], ["y"], name="If_0",
                            then_branch=branch("then", then_size, 1),
                            else_branch=branch("else", else_size, 2))
    g = helper.make_graph(
        [node], "if_graph",
        [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], [outer])
    return _save(_model(g), path)


def constant_model(path, size=6, unreferenced=None):
    """y = x + Constant(value=tensor of `size` floats).  The Constant's tensor
    is an attribute tensor, not a parameter.  `unreferenced` names an
    initializer that no node uses."""
    c = numpy_helper.from_array(np.arange(size, dtype=np.float32), "const_value")
    nodes = [helper.make_node("Constant", [], ["c"], name="Constant_0", value=c),
             helper.make_node("Add", ["x", "c"], ["y"], name="add")]
    inits = []
    if unreferenced:
        inits.append(numpy_helper.from_array(np.zeros((3, 3), np.float32), unreferenced))
    g = helper.make_graph(
        nodes, "const_graph",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [size])], inits)
    return _save(_model(g), path)


def training_info_model(path, size=4):
    """A one-Add model with a training_info whose algorithm graph holds an
    initializer of `size` elements (counted as parameters) and bindings."""
    m = constant_model(os.devnull, size=size)
    algo = helper.make_graph(
        [helper.make_node("Add", ["opt_state", "opt_state"], ["opt_next"], name="sgd_step")],
        "optimizer_step", [], [helper.make_tensor_value_info("opt_next", TensorProto.FLOAT, [size])],
        [numpy_helper.from_array(np.zeros(size, np.float32), "opt_state")])
    t = m.training_info.add()
    t.algorithm.CopyFrom(algo)
    b = t.update_binding.add()
    b.key, b.value = "opt_state", "opt_next"
    return _save(m, path)


def int8_model(path, rows=8, cols=4, dequantize=True):
    """y = x @ Dequantize(w_int8): int8 weights with a scale and zero point.
    With dequantize=False the int8 tensor is only Cast (no quantization op)."""
    w = numpy_helper.from_array(_weights((rows, cols), np.int8, 3), "w_q")
    inits = [w]
    if dequantize:
        inits += [numpy_helper.from_array(np.array(0.05, np.float32), "w_scale"),
                  numpy_helper.from_array(np.array(0, np.int8), "w_zero")]
        deq = helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"])
    else:
        deq = helper.make_node("Cast", ["w_q"], ["w"], to=TensorProto.FLOAT)
    g = helper.make_graph(
        [deq, helper.make_node("MatMul", ["x", "w"], ["y"])], "int8_graph",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, rows])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cols])], inits)
    return _save(_model(g), path)


def external_data_model(path, size=4096, location=None):
    """y = x + w with w (`size` floats) stored outside the model, in
    `location` (default: <model name>.data beside it)."""
    w = numpy_helper.from_array(_weights((size,), np.float32, 5), "big_w")
    g = helper.make_graph(
        [helper.make_node("Add", ["x", "big_w"], ["y"])], "ext_graph",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [size])], [w])
    m = _model(g)
    location = location or os.path.basename(str(path)) + ".data"
    return _save(m, path, save_as_external_data=True, all_tensors_to_one_file=True,
                 location=location, size_threshold=0)


def big_model(path, mbytes=50):
    """A model with about `mbytes` MB of float32 weights in one raw_data
    tensor, for timing: inspect must not read the payload."""
    n = mbytes * 1024 * 1024 // 4
    w = numpy_helper.from_array(np.zeros(n, np.float32), "huge")
    g = helper.make_graph(
        [helper.make_node("Add", ["x", "huge"], ["y"])], "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n])], [w])
    return _save(_model(g), path)


def sparse_model(path, dense=(10, 10), nnz=7):
    """y = x + S with S a sparse_initializer of shape `dense` holding `nnz`
    stored values (which are its parameters)."""
    vals = numpy_helper.from_array(np.arange(1, nnz + 1, dtype=np.float32), "sparse_w")
    idx = numpy_helper.from_array(np.arange(nnz, dtype=np.int64) * 3, "sparse_w_idx")
    s = helper.make_sparse_tensor(vals, idx, list(dense))
    g = helper.make_graph(
        [helper.make_node("Add", ["x", "sparse_w"], ["y"])], "sparse_graph",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(dense))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(dense))], [],
        sparse_initializer=[s])
    return _save(_model(g), path)
