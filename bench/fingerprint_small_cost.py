#!/usr/bin/python3
"""What scanning every student tensor for small teacher tensors costs
(src/lib/fingerprint/fingerprint_pattern.c, issue #22): `nexus inspect
STUDENT --teacher TEACHER` with two builds, run alternately, median of N.

The teacher is BERT-base shaped (12 layers of a 768 x 768 weight and four
768-float vectors: 48 small tensors, 144 small forms with their casts);
the student is bench/gen_model.py's model of --params (25M: ~100 MB in
fp32) in --dtype (fp32, or fp16: issue #22's canonical 16-bit forms hash
all of it a second time).

--teacher-shaped: the student is instead an independent model of the
teacher's shapes (seed 2): every tensor is of a teacher tensor's size, the
worst case of the correlation of same-size tensors (fingerprint_corr.c).

Usage: fingerprint_small_cost.py BEFORE/nexus AFTER/nexus [--dir D] [--runs 5] [--dtype fp16]
       [--teacher-shaped]
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def teacher(path, seed=1):
    rng = np.random.default_rng(seed)
    inits = []
    for i in range(12):
        inits.append(numpy_helper.from_array(
            (rng.standard_normal((768, 768)) / 30).astype(np.float32), f"l{i}.dense.weight"))
        for k in ("dense.bias", "LayerNorm.weight", "LayerNorm.bias", "out.bias"):
            inits.append(numpy_helper.from_array(
                (rng.standard_normal(768) / 16).astype(np.float32), f"l{i}.{k}"))
    g = helper.make_graph([helper.make_node("Identity", [inits[0].name], ["o"])], "t", [],
                          [helper.make_tensor_value_info("o", TensorProto.FLOAT, None)], inits)
    with open(path, "wb") as f:
        f.write(helper.make_model(g).SerializeToString())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--dir", default="/tmp/nexus_fp_small_cost")
    ap.add_argument("--params", default="25M")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--dtype", choices=["fp32", "fp16"], default="fp32",
                    help="the student's weights (fp16: every tensor also hashed canonical)")
    ap.add_argument("--teacher-shaped", action="store_true",
                    help="an independent student of the teacher's shapes")
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    t, s = os.path.join(a.dir, "teacher.onnx"), os.path.join(
        a.dir, f"student_{a.params}{'' if a.dtype == 'fp32' else '_' + a.dtype}.onnx")
    if not os.path.exists(t):
        teacher(t)
    if a.teacher_shaped:
        s = os.path.join(a.dir, "student_teacher_shaped.onnx")
        if not os.path.exists(s):
            teacher(s, seed=2)
    if not os.path.exists(s):
        subprocess.run([sys.executable, os.path.join(ROOT, "bench/gen_model.py"), s,
                        "--params", a.params, "--dtype", a.dtype], check=True, stderr=subprocess.DEVNULL)
    times = {"before": [], "after": []}
    for _ in range(a.runs):
        for name in ("before", "after"):
            t0 = time.perf_counter()
            r = subprocess.run([getattr(a, name), "inspect", s, "--teacher", t],
                               capture_output=True)
            times[name].append(time.perf_counter() - t0)
            # 1: the student shares something (bench/gen_model.py's fp16
            # weights are random bits, which the value sample reads as any
            # teacher's); the cost is what is measured
            if r.returncode not in (0, 1):
                sys.exit(f"{name}: exit {r.returncode}: {r.stderr.decode()[-300:]}")
    b, o = statistics.median(times["before"]), statistics.median(times["after"])
    print(f"student {os.path.getsize(s) / 1e6:.0f} MB, teacher {os.path.getsize(t) / 1e6:.0f} MB, "
          f"{a.runs} runs each, alternating")
    print(f"before: median {b:.3f} s  {[round(x, 3) for x in times['before']]}")
    print(f"after:  median {o:.3f} s  {[round(x, 3) for x in times['after']]}")
    print(f"after / before: {o / b:.2f}x (+{o - b:.3f} s)")


if __name__ == "__main__":
    main()
