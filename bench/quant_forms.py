#!/usr/bin/python3
"""Which int8 form does ONNX Runtime run fastest on CPU?  (issue #19)

    bench/quant_forms.py OUTDIR [--layers 6] [--runs 5] [--seq 128]

Builds a DistilBERT-shaped classifier (vocab 30522, d 768, 12 heads, FFN
3072, 6 layers; ~66M parameters) in float32 with torch, then rewrites its
MatMul weights, per output channel symmetric int8, in the two forms ORT
knows, with onnx + numpy only:

  dynamic  DynamicQuantizeLinear(x) -> MatMulInteger(xq, Wq, xzp) -> Cast ->
           Mul(x_scale * w_scale)            (what quantize_dynamic emits;
           ORT fuses it to DynamicQuantizeMatMul, MLAS int8 GEMM)
  qdq      DequantizeLinear(Wq, w_scale, axis=1) -> MatMul(x, W)
           (weight-only QDQ; float activations)

With --forms fp16w,fp16 it compares the two float16 forms instead:

  fp16w    every float32 initializer of 4096 elements or more stored
           float16, read through Cast(to float) (what export.quantize:
           fp16 writes; ORT folds the Casts at load: float32 compute)
  fp16     the whole graph in float16 (initializers, Constants, Casts to
           float), logits cast back to float32: ORT's CPU EP inserts
           Casts to float32 around every node without a float16 kernel

and times all of them in onnxruntime-node (bench/ort_node_bench.js), one
thread, batch 1 and 8, the same ids, alternating, medians.  The figures
decide the forms `nexus build` emits for export.quantize: int8 and fp16
(see docs/DESIGN-NOTES.md).  The C exporter is not used here: this
compares forms, not implementations.
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

ROOT = pathlib.Path(__file__).resolve().parent.parent
NPM = pathlib.Path(os.environ.get("NEXUS_BENCH_NPM", pathlib.Path.home() / ".cache/nexus/bench/npm"))


class Layer(torch.nn.Module):
    def __init__(self, d, h, ff):
        super().__init__()
        self.h = h
        self.q, self.k, self.v, self.o = (torch.nn.Linear(d, d) for _ in range(4))
        self.ln1, self.ln2 = torch.nn.LayerNorm(d), torch.nn.LayerNorm(d)
        self.f1, self.f2 = torch.nn.Linear(d, ff), torch.nn.Linear(ff, d)

    def forward(self, x, bias):
        b, s, d = x.shape
        hd = d // self.h

        def heads(t):
            return t.view(b, s, self.h, hd).transpose(1, 2)
        a = torch.softmax(heads(self.q(x)) @ heads(self.k(x)).transpose(-1, -2) / hd ** 0.5 + bias, -1)
        a = (a @ heads(self.v(x))).transpose(1, 2).reshape(b, s, d)
        x = self.ln1(x + self.o(a))
        return self.ln2(x + self.f2(torch.nn.functional.gelu(self.f1(x))))


class Model(torch.nn.Module):
    def __init__(self, layers, vocab=30522, d=768, h=12, ff=3072, pos=512):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, d)
        self.pos = torch.nn.Embedding(pos, d)
        self.ln = torch.nn.LayerNorm(d)
        self.layers = torch.nn.ModuleList(Layer(d, h, ff) for _ in range(layers))
        self.head = torch.nn.Linear(d, 2)

    def forward(self, input_ids, attention_mask):
        s = input_ids.shape[1]
        x = self.ln(self.emb(input_ids) + self.pos(torch.arange(s).unsqueeze(0)))
        bias = (1.0 - attention_mask[:, None, None, :].float()) * -1e9
        for l in self.layers:
            x = l(x, bias)
        return self.head(x[:, 0])


def quantize(m, form):
    inits = {t.name: t for t in m.graph.initializer}
    nodes, add = [], []
    for n in m.graph.node:
        w = inits.get(n.input[1]) if n.op_type == "MatMul" and len(n.input) == 2 else None
        if w is None or len(w.dims) != 2:
            nodes.append(n)
            continue
        a = numpy_helper.to_array(w)
        scale = (np.abs(a).max(axis=0) / 127.0).astype(np.float32)
        scale[scale == 0] = 1.0
        q = np.clip(np.rint(a / scale), -127, 127).astype(np.int8)
        p = w.name
        add += [numpy_helper.from_array(q, p + "_q"), numpy_helper.from_array(scale, p + "_scale")]
        x, y = n.input[0], n.output[0]
        if form == "dynamic":
            nodes += [
                helper.make_node("DynamicQuantizeLinear", [x], [y + "_xq", y + "_xs", y + "_xzp"]),
                helper.make_node("MatMulInteger", [y + "_xq", p + "_q", y + "_xzp"], [y + "_i32"]),
                helper.make_node("Cast", [y + "_i32"], [y + "_f"], to=TensorProto.FLOAT),
                helper.make_node("Mul", [y + "_xs", p + "_scale"], [y + "_s"]),
                helper.make_node("Mul", [y + "_f", y + "_s"], [y]),
            ]
        else:
            add.append(numpy_helper.from_array(np.zeros(scale.shape, np.int8), p + "_zp"))
            nodes += [
                helper.make_node("DequantizeLinear", [p + "_q", p + "_scale", p + "_zp"],
                                 [p + "_dq"], axis=1),
                helper.make_node("MatMul", [x, p + "_dq"], [y]),
            ]
        del inits[w.name]
    g = helper.make_graph(nodes, m.graph.name, m.graph.input, m.graph.output,
                          list(inits.values()) + add)
    out = helper.make_model(g, opset_imports=m.opset_import)
    out.ir_version = m.ir_version
    return out


def fp16_weights(m, min_elements=4096):
    """fp16w: float32 initializers stored float16, each behind a Cast."""
    casts, inits = [], []
    for t in m.graph.initializer:
        a = numpy_helper.to_array(t)
        if t.data_type == TensorProto.FLOAT and a.size >= min_elements:
            inits.append(numpy_helper.from_array(a.astype(np.float16), t.name + "/fp16"))
            casts.append(helper.make_node("Cast", [t.name + "/fp16"], [t.name], to=TensorProto.FLOAT))
        else:
            inits.append(t)
    g = helper.make_graph(casts + list(m.graph.node), m.graph.name, m.graph.input,
                          m.graph.output, inits)
    out = helper.make_model(g, opset_imports=m.opset_import)
    out.ir_version = m.ir_version
    return out


def fp16_full(m):
    """fp16: every float tensor float16 (constants clamped to +-65504),
    the float outputs cast back to float32."""
    def half(t):
        a = numpy_helper.to_array(t)
        if a.dtype != np.float32:
            return t
        return numpy_helper.from_array(np.clip(a, -65504, 65504).astype(np.float16), t.name)
    nodes = []
    for n in m.graph.node:
        n = onnx.NodeProto.FromString(n.SerializeToString())
        for a in n.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                a.t.CopyFrom(half(a.t))
            if n.op_type == "Cast" and a.name == "to" and a.i == TensorProto.FLOAT:
                a.i = TensorProto.FLOAT16
        nodes.append(n)
    outs = []
    for o in m.graph.output:
        for n in nodes:
            n.output[:] = [x + "/h" if x == o.name else x for x in n.output]
            n.input[:] = [x + "/h" if x == o.name else x for x in n.input]
        nodes.append(helper.make_node("Cast", [o.name + "/h"], [o.name], to=TensorProto.FLOAT))
        outs.append(o)
    g = helper.make_graph(nodes, m.graph.name, m.graph.input, outs,
                          [half(t) for t in m.graph.initializer])
    out = helper.make_model(g, opset_imports=m.opset_import)
    out.ir_version = m.ir_version
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--n", type=int, default=16, help="sequences per timed run")
    ap.add_argument("--forms", default="dynamic,qdq", help="of dynamic, qdq, fp16w, fp16")
    a = ap.parse_args()
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    fp32 = out / "fp32.onnx"
    if not fp32.exists():
        torch.manual_seed(0)
        model = Model(a.layers).eval()
        ids = torch.randint(0, 30522, (1, a.seq))
        torch.onnx.export(model, (ids, torch.ones_like(ids)), str(fp32),
                          input_names=["input_ids", "attention_mask"], output_names=["logits"],
                          dynamic_axes={"input_ids": {0: "b", 1: "s"},
                                        "attention_mask": {0: "b", 1: "s"}}, opset_version=17)
    base = onnx.load(str(fp32))
    models = {"fp32": fp32}
    make = {"dynamic": lambda: quantize(base, "dynamic"), "qdq": lambda: quantize(base, "qdq"),
            "fp16w": lambda: fp16_weights(base), "fp16": lambda: fp16_full(base)}
    for form in a.forms.split(","):
        p = out / f"{form}.onnx"
        onnx.save(make[form](), str(p))
        models[form] = p
    rng = np.random.default_rng(1)
    ids = out / "ids.jsonl"
    ids.write_text("".join(json.dumps([101] + rng.integers(1000, 30000, a.seq - 2).tolist() + [102])
                           + "\n" for _ in range(a.n)))
    env = dict(os.environ, NODE_PATH=str(NPM / "node_modules"))
    res = {}
    for batch in (1, 8):
        times = {k: [] for k in models}
        logits = {}
        for _ in range(a.runs):
            for k, p in models.items():
                o = out / f"res_{k}.json"
                subprocess.run(["node", str(ROOT / "bench/ort_node_bench.js"), "throughput", str(p),
                                str(ids), str(batch), "1", str(o)], check=True, env=env)
                r = json.loads(o.read_text())
                times[k].append(r["run_ms"])
                logits[k] = np.array(r["logits"])
        med = {k: statistics.median(v) for k, v in times.items()}
        for k in models:
            d = np.abs(logits[k] - logits["fp32"]).max()
            res[f"b{batch}_{k}"] = {"median_run_ms": med[k], "speedup_vs_fp32": med["fp32"] / med[k],
                                    "max_logit_diff": float(d),
                                    "size_bytes": models[k].stat().st_size}
            print(f"batch {batch} {k:8s} run {med[k]:9.1f} ms  x{med['fp32'] / med[k]:.2f} vs fp32  "
                  f"max|dlogit| {d:.4f}  size {models[k].stat().st_size / 1e6:.1f} MB", flush=True)
    (out / "results.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    sys.exit(main())
