#!/usr/bin/python3
"""Generate a decoder-shaped float32 student with all its weights in one
external data file (the layout torch.onnx.export writes past 2 GB).

    gen_decoder.py OUT.onnx [--params 1.2B] [--dim 2048] [--seed 0]

input_ids -> Gather(embedding [32000, dim]) -> L blocks of
x + MatMul(Relu(MatMul(x, up [dim, 4 dim])), down [4 dim, dim]) ->
ReduceMean -> MatMul(head [dim, 2]) -> logits.  L is chosen so the model
holds about --params parameters.  The values are real: normal random
float32 (numpy, one tensor at a time, finite), each weight scaled by
1/sqrt(fan-in), written in 64 MiB pieces, so memory stays small whatever
the size.  Only the graph (a few KB) goes through onnx.save.
A data file of the expected size is reused as it is.
"""
import argparse
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

VOCAB = 32000
PIECE = 16 << 20          # float32 values per write (64 MiB)


def parse_count(text):
    mult = {"K": 10**3, "M": 10**6, "B": 10**9, "G": 10**9}
    t = text.strip().upper()
    return int(float(t[:-1]) * mult[t[-1]]) if t[-1] in mult else int(t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--params", default="1.2B")
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    d = a.dim
    per_layer = 8 * d * d
    layers = max(1, round((parse_count(a.params) - VOCAB * d) / per_layer))
    rng = np.random.default_rng(a.seed)
    data_name = os.path.basename(a.out) + ".data"
    data_path = os.path.join(os.path.dirname(os.path.abspath(a.out)), data_name)
    inits, offset = [], 0
    total = 4 * (VOCAB * d + layers * per_layer)
    # a data file of this seed and size already written is kept (the values
    # are a function of the seed): only the graph is written again
    keep = os.path.exists(data_path) and os.path.getsize(data_path) == total

    with open(data_path, "rb" if keep else "wb") as f:
        def weight(name, rows, cols):
            nonlocal offset
            left, scale = rows * cols, np.float32(1 / np.sqrt(rows))
            while left and not keep:
                n = min(left, PIECE)
                f.write((rng.standard_normal(n, dtype=np.float32) * scale).tobytes())
                left -= n
            t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=[rows, cols],
                            data_location=TensorProto.EXTERNAL)
            for k, v in (("location", data_name), ("offset", str(offset)),
                         ("length", str(rows * cols * 4))):
                e = t.external_data.add()
                e.key, e.value = k, v
            offset += rows * cols * 4
            inits.append(t)

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
    head = (np.random.default_rng(a.seed + 1).standard_normal((d, 2), dtype=np.float32)
            / np.sqrt(d)).astype(np.float32)
    nodes += [helper.make_node("ReduceMean", [f"x{layers}"], ["pooled"], axes=[1], keepdims=0, name="pool"),
              helper.make_node("MatMul", ["pooled", "head"], ["logits"], name="head")]
    g = helper.make_graph(
        nodes, "decoder_student",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        inits + [numpy_helper.from_array(head, "head")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="pytorch")
    m.ir_version = 7
    with open(a.out, "wb") as f:
        f.write(m.SerializeToString())
    n = VOCAB * d + layers * per_layer + 2 * d
    print(f"{a.out}: {layers} layers, {n / 1e9:.2f}B parameters, {offset / 1e9:.2f} GB of external "
          f"data", file=sys.stderr)


if __name__ == "__main__":
    main()
