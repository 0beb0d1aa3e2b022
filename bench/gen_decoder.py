#!/usr/bin/python3
"""Generate a decoder-shaped float32 student with all its weights in one
external data file (the layout torch.onnx.export writes past 2 GB), or,
with --int8, the model `nexus inspect --export-to --quantize int8` makes
of it, written directly.

    gen_decoder.py OUT.onnx [--params 1.2B] [--dim 2048] [--seed 0] [--int8]

input_ids -> Gather(embedding [32000, dim]) -> L blocks of
x + MatMul(Relu(MatMul(x, up [dim, 4 dim])), down [4 dim, dim]) ->
ReduceMean -> MatMul(head [dim, 2]) -> logits.  L is chosen so the model
holds about --params parameters.  The values are real: normal random
float32 (numpy, one tensor at a time, finite), each weight scaled by
1/sqrt(fan-in), written in 64 MiB pieces, so memory stays small whatever
the size.  Only the graph (a few KB) goes through onnx.save.
A data file of the expected size is reused as it is.

--int8: the same float32 values (same seed, same stream), quantized as
src/lib/export/quant.c does (symmetric, zero point 0; a MatMul weight per
column, the embedding per row; scale = max|w| / 127 in float32, values
rint(w / scale) clipped to +-127), in the graph its export writes
(DynamicQuantizeLinear + MatMulInteger + Cast + Mul per MatMul, Gather of
int8 rows and of their scales + Cast + Mul for the embedding; the unused
attention_mask input dropped; producer nexus), tensors of 64 KiB or more
in the data file at 4 KiB-aligned offsets.  The 1.2B model is then a
1.2 GB data file instead of the 4.8 GB float32 one, never written: the
int8 model's liveness can be checked on a host without room for the
float32 export (bench/run.py --only liveness_big).  One float32 tensor
at a time is held (at most 64 MiB, a MatMul weight needs its column
maxima before its values).  `bench/gen_decoder.py --check-int8 DIR` is
the proof of the form: it writes a small model both ways and compares
the graph and every value with nexus's own export.
"""
import argparse
import os
import subprocess
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

VOCAB = 32000
PIECE = 16 << 20          # float32 values per write (64 MiB)
ALIGN = 4096              # NX_EXPORT_DATA_ALIGN (include/nexus/export.h)
EXTERNAL_MIN = 64 << 10   # NX_EXPORT_EXTERNAL_MIN: smaller tensors stay inline
QUANT_MIN = 4096          # NX_QUANT_MIN_ELEMENTS: smaller weights stay float


def parse_count(text):
    mult = {"K": 10**3, "M": 10**6, "B": 10**9, "G": 10**9}
    t = text.strip().upper()
    return int(float(t[:-1]) * mult[t[-1]]) if t[-1] in mult else int(t)


def shape(params, d):
    per_layer = 8 * d * d
    return max(1, round((parse_count(params) - VOCAB * d) / per_layer))


def pieces(rng, rows, cols):
    """The float32 values of one weight, in gen_decoder's stream order."""
    left, scale = rows * cols, np.float32(1 / np.sqrt(rows))
    while left:
        n = min(left, PIECE)
        yield rng.standard_normal(n, dtype=np.float32) * scale
        left -= n


def head_values(seed, d):
    return (np.random.default_rng(seed + 1).standard_normal((d, 2), dtype=np.float32)
            / np.sqrt(d)).astype(np.float32)


def ext_tensor(name, dtype, dims, location, offset, length):
    t = TensorProto(name=name, data_type=dtype, dims=dims, data_location=TensorProto.EXTERNAL)
    for k, v in (("location", location), ("offset", str(offset)), ("length", str(length))):
        e = t.external_data.add()
        e.key, e.value = k, v
    return t


def float32_model(a, d, layers, data_name, data_path):
    inits, offset = [], 0
    total = 4 * (VOCAB * d + layers * 8 * d * d)
    rng = np.random.default_rng(a.seed)
    # a data file of this seed and size already written is kept (the values
    # are a function of the seed): only the graph is written again
    keep = os.path.exists(data_path) and os.path.getsize(data_path) == total

    with open(data_path, "rb" if keep else "wb") as f:
        def weight(name, rows, cols):
            nonlocal offset
            if not keep:
                for p in pieces(rng, rows, cols):
                    f.write(p.tobytes())
            inits.append(ext_tensor(name, TensorProto.FLOAT, [rows, cols], data_name, offset,
                                    rows * cols * 4))
            offset += rows * cols * 4

        weight("embed.weight", VOCAB, d)
        nodes = [helper.make_node("Gather", ["embed.weight", "input_ids"], ["x0"], name="embed")]
        for i in range(layers):
            weight(f"layers.{i}.up.weight", d, 4 * d)
            weight(f"layers.{i}.down.weight", 4 * d, d)
            nodes += [
                helper.make_node("MatMul", [f"x{i}", f"layers.{i}.up.weight"], [f"u{i}"], name=f"layers.{i}.up"),
                helper.make_node("Relu", [f"u{i}"], [f"r{i}"], name=f"layers.{i}.relu"),
                helper.make_node("MatMul", [f"r{i}", f"layers.{i}.down.weight"], [f"o{i}"], name=f"layers.{i}.down"),
                helper.make_node("Add", [f"x{i}", f"o{i}"], [f"x{i + 1}"], name=f"layers.{i}.add"),
            ]
    nodes += [helper.make_node("ReduceMean", [f"x{layers}"], ["pooled"], axes=[1], keepdims=0, name="pool"),
              helper.make_node("MatMul", ["pooled", "head"], ["logits"], name="head")]
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
              helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])]
    inits.append(numpy_helper.from_array(head_values(a.seed, d), "head"))
    return nodes, inputs, inits, "pytorch", offset


def int8_model(a, d, layers, data_name, data_path):
    """The graph and data file quant.c's export writes of float32_model."""
    rng = np.random.default_rng(a.seed)
    inits, nodes = [], []
    f = open(data_path, "wb")

    def put(name, dtype, arr):
        """arr (or, for a generator, its pieces) inline or in the data file."""
        if arr.nbytes < EXTERNAL_MIN:
            inits.append(numpy_helper.from_array(arr, name))
            return
        pad = -f.tell() % ALIGN
        f.write(b"\0" * pad)
        off = f.tell()
        f.write(np.ascontiguousarray(arr).tobytes())
        inits.append(ext_tensor(name, dtype, list(arr.shape), data_name, off, arr.nbytes))

    def quantize(w, s):
        return np.clip(np.rint(w / s), -127, 127).astype(np.int8)

    def scale_of(maxabs):
        return np.where(maxabs > 0, maxabs / np.float32(127), np.float32(1)).astype(np.float32)

    def matmul(node, x, w_name, w, y):
        """quant.c's MatMul form; w the float32 [K, N] values."""
        if w.size < QUANT_MIN:
            inits.append(numpy_helper.from_array(w, w_name))
            nodes.append(helper.make_node("MatMul", [x, w_name], [y], name=node))
            return
        s = scale_of(np.abs(w).max(axis=0))
        put(w_name + "/int8", TensorProto.INT8, quantize(w, s))
        put(w_name + "/scale", TensorProto.FLOAT, s)
        nodes.extend([
            helper.make_node("DynamicQuantizeLinear", [x], [f"{y}/int8/x", f"{y}/int8/x_scale",
                             f"{y}/int8/x_zero"], name=f"{node}/int8/quantize"),
            helper.make_node("MatMulInteger", [f"{y}/int8/x", w_name + "/int8", f"{y}/int8/x_zero"],
                             [f"{y}/int8/acc"], name=f"{node}/int8/matmul"),
            helper.make_node("Cast", [f"{y}/int8/acc"], [f"{y}/int8/acc_float"], to=TensorProto.FLOAT,
                             name=f"{node}/int8/cast"),
            helper.make_node("Mul", [f"{y}/int8/x_scale", w_name + "/scale"], [f"{y}/int8/scale"],
                             name=f"{node}/int8/scale"),
            helper.make_node("Mul", [f"{y}/int8/acc_float", f"{y}/int8/scale"], [y], name=node)])

    def weight(rows, cols):
        return np.concatenate(list(pieces(rng, rows, cols))).reshape(rows, cols)

    # the embedding, per row: its int8 rows streamed piece by piece (a piece
    # is whole rows when dim divides PIECE; else a row is completed from the
    # next), its scales after them
    name, scales, pad = "embed.weight", [], -f.tell() % ALIGN
    off, carry = f.tell() + pad, np.empty(0, np.float32)
    f.write(b"\0" * pad)
    for p in pieces(rng, VOCAB, d):
        p = np.concatenate([carry, p]) if carry.size else p
        whole = p.size // d * d
        rows, carry = p[:whole].reshape(-1, d), p[whole:]
        s = scale_of(np.abs(rows).max(axis=1))
        scales.append(s)
        f.write(quantize(rows, s[:, None]).tobytes())
    inits.append(ext_tensor(name + "/int8", TensorProto.INT8, [VOCAB, d], data_name, off, VOCAB * d))
    put(name + "/scale", TensorProto.FLOAT, np.concatenate(scales).reshape(VOCAB, 1))
    nodes.extend([
        helper.make_node("Gather", [name + "/int8", "input_ids"], ["x0/int8/rows"], name="embed/int8/gather"),
        helper.make_node("Gather", [name + "/scale", "input_ids"], ["x0/int8/scale"],
                         name="embed/int8/gather_scale"),
        helper.make_node("Cast", ["x0/int8/rows"], ["x0/int8/rows_float"], to=TensorProto.FLOAT,
                         name="embed/int8/cast"),
        helper.make_node("Mul", ["x0/int8/rows_float", "x0/int8/scale"], ["x0"], name="embed")])
    for i in range(layers):
        matmul(f"layers.{i}.up", f"x{i}", f"layers.{i}.up.weight", weight(d, 4 * d), f"u{i}")
        nodes.append(helper.make_node("Relu", [f"u{i}"], [f"r{i}"], name=f"layers.{i}.relu"))
        matmul(f"layers.{i}.down", f"r{i}", f"layers.{i}.down.weight", weight(4 * d, d), f"o{i}")
        nodes.append(helper.make_node("Add", [f"x{i}", f"o{i}"], [f"x{i + 1}"], name=f"layers.{i}.add"))
    nodes.append(helper.make_node("ReduceMean", [f"x{layers}"], ["pooled"], axes=[1], keepdims=0,
                                  name="pool"))
    matmul("head", "pooled", "head", head_values(a.seed, d), "logits")
    size = f.tell()
    f.close()
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])]
    return nodes, inputs, inits, "nexus", size


def write(a):
    d = a.dim
    layers = shape(a.params, d)
    data_name = os.path.basename(a.out) + ".data"
    data_path = os.path.join(os.path.dirname(os.path.abspath(a.out)), data_name)
    os.makedirs(os.path.dirname(data_path), exist_ok=True)
    nodes, inputs, inits, producer, size = (int8_model if a.int8 else float32_model)(
        a, d, layers, data_name, data_path)
    g = helper.make_graph(nodes, "decoder_student", inputs,
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
                          inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name=producer)
    if a.int8:
        m.producer_version = "0.1.0"
    m.ir_version = 7
    with open(a.out, "wb") as f:
        f.write(m.SerializeToString())
    n = VOCAB * d + layers * 8 * d * d + 2 * d
    print(f"{a.out}: {layers} layers, {n / 1e9:.2f}B parameters, {size / 1e9:.2f} GB of external "
          f"data{' (int8)' if a.int8 else ''}", file=sys.stderr)


def check_int8(workdir, nexus, params, dim):
    """Write a small model as float32 and as --int8 (same seed); export the
    float32 one with nexus's int8 quantization; the two int8 models must
    have the same graph and the same values (layout aside)."""
    from onnx import numpy_helper as nh
    fp, q8, ex = (os.path.join(workdir, x) for x in ("fp32/d.onnx", "int8/d.onnx", "export/m.onnx"))
    for out, int8 in ((fp, False), (q8, True)):
        write(argparse.Namespace(out=out, params=params, dim=dim, seed=0, int8=int8))
    os.makedirs(os.path.dirname(ex), exist_ok=True)
    subprocess.run([nexus, "inspect", "--json", "--export-to", ex, "--quantize", "int8",
                    "--external-data", "always", fp], check=True, stdout=subprocess.DEVNULL)
    ours, theirs = onnx.load(q8), onnx.load(ex)
    bad = []
    for m in (ours, theirs):
        for t in m.graph.initializer:
            t.ClearField("external_data")
            t.data_location = TensorProto.DEFAULT
    vo = {t.name: nh.to_array(t) for t in ours.graph.initializer}
    vt = {t.name: nh.to_array(t) for t in theirs.graph.initializer}
    if list(vo) != list(vt):
        bad.append(f"initializers differ: {list(vo)[:6]} vs {list(vt)[:6]}")
    for k in vo:
        if k in vt and (vo[k].dtype != vt[k].dtype or vo[k].shape != vt[k].shape
                        or not np.array_equal(vo[k], vt[k])):
            bad.append(f"{k}: values differ")
    for m in (ours, theirs):
        m.graph.ClearField("initializer")
    if ours.graph != theirs.graph:
        bad.append("graphs differ (nodes, inputs, outputs)")
    for f in ("ir_version", "producer_name", "opset_import"):
        if getattr(ours, f) != getattr(theirs, f):
            bad.append(f"{f}: {getattr(ours, f)} vs {getattr(theirs, f)}")
    print(f"{len(vo)} initializers, {len(ours.graph.node)} nodes: "
          + ("the same as nexus's export" if not bad else "; ".join(bad[:8])), file=sys.stderr)
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out", help="OUT.onnx, or with --check-int8 a work directory")
    ap.add_argument("--params", default="1.2B")
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--int8", action="store_true", help="write the int8 export directly")
    ap.add_argument("--check-int8", metavar="NEXUS",
                    help="compare --int8 with this nexus's export of the float32 model")
    a = ap.parse_args()
    if a.check_int8:
        return check_int8(a.out, a.check_int8, a.params, a.dim)
    write(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
