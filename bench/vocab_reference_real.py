#!/usr/bin/python3
"""What `nexus verify --vocab-reference FILE` charges real vocabularies
(issue 22, docs/TRV.md "Leak budget": the vocabulary coded given a
reference).  For each real-sized tokenizer of bench/tok_budget_real.py
(its --work folder: trained once, reused) the reference FILE is the
tokenizer itself, and the student's tokenizer.json in the suite's fixture
bundle is, side by side with and without the reference:

    same        the reference unchanged
    added100    the reference with 100 tokens appended (ids N..N+99)
    reordered   the same tokens, ids shuffled
    unrelated   another tokenizer of the set (a student that does not
                reuse the reference)

and a padding attack: the reference plus 40,000 made-up 2-character CJK
tokens (about 4 bytes each in the stream, under the 6 a token the
allowance gives without a reference).  Printed: verdict, the leak budget
used, and the vocabulary stream's charge.

    /usr/bin/python3 bench/vocab_reference_real.py [--build DIR]
        [--work /tmp/tokwork18] [--out DIR] [--only NAME,...]
"""
import argparse
import json
import os
import pathlib
import random
import re
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
sys.path.insert(0, str(ROOT / "bench"))

import bundle_fixture as bf  # noqa: E402
import tok_budget_real as tbr  # noqa: E402
import tok_matrix as tm  # noqa: E402


def tokenizers(work, only):
    """The tokenizers tok_budget_real.py trained in work (those present)."""
    want = lambda n: not only or n in only  # noqa: E731
    toks = {}
    if (work / "raw_wp_uncased.json").exists():
        raw = tbr.npm_tokenizers(work, want, toks)
        if want("bpe_sp_50k") and (work / "bpe50k.model").exists():
            toks["bpe_sp_50k"] = tbr.spm_bpe_llama(work / "bpe50k.model", raw["bpe_metaspace"])
    for name in ("uni_32k", "uni_big", "uni_cjk_32k"):
        if want(name) and (work / f"{name}.model").exists():
            toks[name] = tm.unigram_xlmr(work / f"{name}.model")
    return toks


def extended(tok, words):
    """tok with the tokens `words` appended at the end of its vocabulary."""
    t = json.loads(json.dumps(tok))
    v = t["model"]["vocab"]
    if isinstance(v, list):   # Unigram: [piece, score], the new ones scored lowest
        low, have = min(s for _, s in v), {p for p, _ in v}
        v += [[w, low - 1 - i / 1e5] for i, w in enumerate(x for x in words if x not in have)]
    else:
        for w in words:
            v.setdefault(w, len(v))
    return t


def reordered(tok, seed=0):
    """The same tokens under shuffled ids (a Unigram: pieces shuffled over
    the scores, which stay in order)."""
    t = json.loads(json.dumps(tok))
    v = t["model"]["vocab"]
    rng = random.Random(seed)
    if isinstance(v, list):
        pieces = [p for p, _ in v]
        rng.shuffle(pieces)
        t["model"]["vocab"] = [[p, s] for p, (_, s) in zip(pieces, v)]
    else:
        ids = list(v.values())
        rng.shuffle(ids)
        t["model"]["vocab"] = dict(sorted(zip(v, ids), key=lambda kv: kv[1]))
    return t


def verify(nexus, runtime, bundle, ref):
    env = dict(os.environ, NEXUS_RUNTIME_DIR=str(runtime))
    args = [str(nexus), "verify", "--json", "--no-sandbox"]
    if ref:
        args += ["--vocab-reference", str(ref)]
    r = subprocess.run(args + [str(bundle.root)], capture_output=True, text=True, env=env,
                       timeout=900)
    rep = json.loads(r.stdout)
    used = charged = None
    for f in rep["findings"]:
        m = re.search(r"carries (\d+) bytes", f["message"])
        if m and f["code"] in ("budget-total", "budget-exceeded"):
            used = int(m.group(1))
        m = re.search(r"hold \d+ tokens, (\d+) bytes compressed.*charged (\d+);", f["message"])
        if m and f["code"] == "budget-used":
            charged = (int(m.group(1)), int(m.group(2)))
    fails = sorted({f["code"] for f in rep["findings"] if f["severity"] == "FAIL"})
    return rep["verdict"], used, charged, fails


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.environ.get("NEXUS_BUILD", ROOT / "build"))
    ap.add_argument("--work", default="/tmp/tokwork18",
                    help="bench/tok_budget_real.py's --work (run it first)")
    ap.add_argument("--out", default=ROOT / "build" / "vocab_reference_real")
    ap.add_argument("--only", default="")
    a = ap.parse_args()
    work, out = pathlib.Path(a.work), pathlib.Path(a.out)
    nexus = pathlib.Path(a.build) / "bin" / "nexus"
    toks = tokenizers(work, set(filter(None, a.only.split(","))))
    if not toks:
        print(f"no tokenizers in {work}: run bench/tok_budget_real.py --work {work}")
        return 1
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    runtime = bf.make_runtime(out / "runtime")
    from test_vocab_bound import cjk_tokens
    names = list(toks)
    print(f"{'reference':<12} {'student':<14} {'without: verdict':>16} {'used':>7} "
          f"{'L':>8} {'charged':>8} | {'with: verdict':>13} {'used':>7} {'L|ref':>8} "
          f"{'charged':>8}")
    for k, name in enumerate(names):
        tok = toks[name]
        ref = out / f"{name}.tokenizer.json"
        ref.write_text(json.dumps(tok, ensure_ascii=False), encoding="utf-8")
        other = toks[names[(k + 1) % len(names)]] if len(names) > 1 else None
        cases = {"same": tok,
                 "added100": extended(tok, [f"newtok{i}" for i in range(100)]),
                 "reordered": reordered(tok),
                 "unrelated": other,
                 "padded40k": extended(tok, cjk_tokens(40000, 2, seed=9))}
        for case, student in cases.items():
            if student is None:
                continue
            d = out / "bundles" / f"{name}_{case}"
            d.mkdir(parents=True)
            b = bf.Bundle(d / "nexus_bundle_v1", runtime)
            b.write("model/tokenizer/tokenizer.json", json.dumps(student, ensure_ascii=False))
            b.remove("model/tokenizer/vocab.txt")
            b.regen_manifest()
            v0, u0, c0, f0 = verify(nexus, runtime, b, None)
            v1, u1, c1, f1 = verify(nexus, runtime, b, ref)
            b.unlock()
            shutil.rmtree(d)
            c0, c1 = c0 or (0, 0), c1 or (0, 0)
            print(f"{name:<12} {case:<14} {v0:>16} {u0:>7} {c0[0]:>8} {c0[1]:>8} | "
                  f"{v1:>13} {u1:>7} {c1[0]:>8} {c1[1]:>8}  {','.join(f1)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
