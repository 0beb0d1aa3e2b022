"""ONNX protobuf written by hand (varints, fields, tensors in every encoding)
and tokenizers edited to carry data. (from test_redteam3.py, by
scripts/dev/regroup_tests.py).
"""
import json

import numpy as np
from onnx import TensorProto, helper, numpy_helper

import bundle_fixture as bf
from smuggling import floats


def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(num, wire, payload):
    """One protobuf field: payload is bytes for LEN (2), an int otherwise."""
    tag = varint(num << 3 | wire)
    if wire == 2:
        return tag + varint(len(payload)) + payload
    if wire == 0:
        return tag + varint(payload)
    if wire == 5:
        return tag + int(payload).to_bytes(4, "little")
    return tag + int(payload).to_bytes(8, "little")


def tensor_bytes(name, dtype, dims, payload_fields):
    """A TensorProto: dims (1), data_type (2), name (8), then payload fields."""
    out = b"".join(field(1, 0, d) for d in dims) + field(2, 0, dtype)
    return out + field(8, 2, name.encode()) + b"".join(payload_fields)


def model_with_initializer(model, tensor):
    """model's bytes with one more main-graph initializer given as bytes.
    Fields may come in any order, so the initializer is appended to the
    graph and the graph to the model."""
    graph = model.graph.SerializeToString() + field(5, 2, tensor)
    rest = type(model)()
    rest.CopyFrom(model)
    rest.ClearField("graph")
    return rest.SerializeToString() + field(7, 2, graph)


def sink_nodes(name, to_float=True):
    """Nodes that use initializer `name` and discard it (x a zero computed
    from the input as the difference of two equal nodes - Sub(x, x) with
    one input named twice is a constant to constant-subgraph - so that no
    node computes from constants only): the tensor is referenced, and only
    the fingerprint (or, where the selftest runs, liveness) can name it
    (docs/TRV.md)."""
    nodes = []
    src = name
    if to_float:
        nodes.append(helper.make_node("Cast", [name], [name + "_f"], name=name + "_cast",
                                      to=TensorProto.FLOAT))
        src = name + "_f"
    nodes += [helper.make_node("Cast", ["input_ids"], [name + "_ids"], name=name + "_ids",
                               to=TensorProto.FLOAT),
              helper.make_node("ReduceSum", [name + "_ids"], [name + "_a"], name=name + "_a",
                               keepdims=0),
              helper.make_node("ReduceSum", [name + "_ids"], [name + "_b"], name=name + "_b",
                               keepdims=0),
              helper.make_node("Sub", [name + "_a", name + "_b"], [name + "_0"],
                               name=name + "_0"),
              helper.make_node("Mul", [src, name + "_0"], [name + "_m"], name=name + "_m"),
              helper.make_node("ReduceSum", [name + "_m"], [name + "_s"], name=name + "_sum",
                               keepdims=0),
              helper.make_node("Mul", [name + "_s", "zero"], [name + "_z"], name=name + "_mul")]
    return nodes


def smuggle_model_bytes(bundle, data, params):
    bundle.meta["parameters"] = bf.human(params)
    bundle.smuggle("model/student_model.onnx", data)


def teacher_file(tmp_path, arr, name="layer3.weight"):
    g = helper.make_graph([helper.make_node("Identity", [name], ["o"])], "t", [],
                          [helper.make_tensor_value_info("o", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(arr, name)])
    p = tmp_path / "big.onnx"
    p.write_bytes(helper.make_model(g).SerializeToString())
    return p


def fp16_in_int32_data(arr):
    # the ONNX way for float16 without raw_data: one varint per element
    bits = arr.view(np.uint16).ravel()
    return [field(5, 2, b"".join(varint(int(v)) for v in bits))]


def int8_in_int32_data(arr):
    # int8 as int32 varints: negative values take ten bytes each
    return [field(5, 2, b"".join(varint(int(v)) for v in arr.ravel()))]


def float_unpacked(arr):
    # float_data written one fixed32 field per element (valid protobuf)
    return [field(4, 5, int(v)) for v in arr.view(np.uint32).ravel()]


def float_split(arr):
    # float_data in two packed runs: protobuf concatenates them
    raw = arr.tobytes()
    return [field(4, 2, raw[:len(raw) // 2]), field(4, 2, raw[len(raw) // 2:])]


def raw_after_empty_typed(arr):
    # an empty int32_data before raw_data: the raw bytes are what is read
    return [field(5, 2, b""), field(9, 2, arr.tobytes())]


def raw_after_decoy_raw(arr):
    # raw_data twice: protobuf (and ONNX Runtime) keep the last one
    return [field(9, 2, b"\0" * 16), field(9, 2, arr.tobytes())]


ENCODINGS = {
    "fp16-int32_data": (TensorProto.FLOAT16, lambda: floats(4096, 11).astype(np.float16).reshape(512, 8),
                        fp16_in_int32_data),
    "int8-int32_data": (TensorProto.INT8,
                        lambda: np.random.default_rng(5).integers(-128, 128, 8192, dtype=np.int8),
                        int8_in_int32_data),
    "float-unpacked": (TensorProto.FLOAT, lambda: floats(2048, 12), float_unpacked),
    "float-split": (TensorProto.FLOAT, lambda: floats(2048, 13), float_split),
    "raw-after-empty-typed": (TensorProto.FLOAT, lambda: floats(2048, 14), raw_after_empty_typed),
    "raw-after-decoy-raw": (TensorProto.FLOAT, lambda: floats(2048, 15), raw_after_decoy_raw),
}


def tokenizer(bundle):
    return json.loads(bundle.path("model/tokenizer/tokenizer.json").read_text())


def smuggle_tokenizer(bundle, tok):
    bundle.smuggle("model/tokenizer/tokenizer.json", json.dumps(tok))


def b64_chunks(n_floats, size):
    import base64
    blob = base64.b64encode(floats(n_floats).tobytes()).decode()
    return [blob[i:i + size] for i in range(0, len(blob), size)]


def identity_chain(start, texts, make):
    """Live Identity nodes start -> start_1 -> ... each carrying a text."""
    nodes, prev = [], start
    for i, t in enumerate(texts):
        out = f"{start}_{i + 1}"
        nodes.append(helper.make_node("Identity", [prev], [out], name=f"id{i}", **make(t)))
        prev = out
    return nodes, prev


FAKE_PACKAGE = {
    # src/torch.py makes itself a package over src/, so torch.optim is
    # src/optim.py in the sandbox and the real torch.optim in production
    "path-assigned": "import os\n__path__ = [os.path.dirname(__file__)]\n",
    "path-by-computed-name": ("import os\n"
                              "globals()[chr(95) * 2 + 'pa' + 'th' + chr(95) * 2] = "
                              "[os.path.dirname(__file__)]\n"),
}


def split_student(parts):
    """A student whose extra initializers p0, p1, ... are each discarded
    (x 0): what a copied teacher tensor cut into pieces looks like.
    (Concatenated in the graph, the pieces would be constant-subgraph.)"""
    zero = numpy_helper.from_array(np.zeros((), np.float32), "zero")
    inits = [numpy_helper.from_array(p, f"p{i}") for i, p in enumerate(parts)]
    nodes = [n for i in range(len(parts)) for n in sink_nodes(f"p{i}", to_float=False)]
    return bf.student_model(extra_nodes=nodes, extra_initializers=inits + [zero])
