#!/usr/bin/python3
"""What the vocabulary bound (issue 22, docs/TRV.md "Leak budget", tier 2)
costs verify on a 250,000-token vocabulary: `nexus verify --json
--no-sandbox` of the suite's fixture bundle holding a multilingual
WordLevel of N tokens (the commonest words of every message catalogue under
/usr/share/locale), this build against a baseline build without the bound
(e.g. main's), runs alternated, medians and their ratio.

    /usr/bin/python3 bench/vocab_bound_cost.py --base OTHER_BUILD [--build DIR]
        [--tokens 250000] [--runs 5] [--work DIR] [--reference]

The difference of the medians is the bound's cost: writing the stream and
compressing it (zstd level 12 above 1 MiB, NX_BUDGET_VOCAB_FAST_LEVEL).

--reference: this build runs with `--vocab-reference` the vocabulary's own
tokenizer.json (written outside the bundle), the baseline without; with
--base this build's own directory the difference is the reference's cost
(reading and walking the reference, and compressing the stream with it as
a zstd dictionary).  --generated: the words of test_vocab_bound's syllable
model instead of the message catalogues (for machines with few).
"""
import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

import bundle_fixture as bf  # noqa: E402
from test_vocab_bound import catalogue_words, generated_words  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.environ.get("NEXUS_BUILD", ROOT / "build"))
    ap.add_argument("--base", required=True, help="the baseline build directory")
    ap.add_argument("--tokens", type=int, default=250000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--work", default=ROOT / "build" / "vocab_bound_cost")
    ap.add_argument("--reference", action="store_true")
    ap.add_argument("--generated", action="store_true")
    a = ap.parse_args()
    work = pathlib.Path(a.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    runtime = bf.make_runtime(work / "runtime")
    b = bf.Bundle(work / "nexus_bundle_v1", runtime)
    vocab = {"[UNK]": 0}
    words = (generated_words(a.tokens - 1) if a.generated else
             catalogue_words(a.tokens - 1, locales=None, seen=1))
    for w in words:
        vocab.setdefault(w, len(vocab))
    tok = json.loads(b.path("model/tokenizer/tokenizer.json").read_text(encoding="utf-8"))
    tok.update(normalizer={"type": "Lowercase"}, pre_tokenizer={"type": "Whitespace"},
               post_processor=None, decoder=None,
               added_tokens=[{"id": 0, "content": "[UNK]", "single_word": False,
                              "lstrip": False, "rstrip": False, "normalized": False,
                              "special": True}],
               model={"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"})
    b.write("model/tokenizer/tokenizer.json", json.dumps(tok, ensure_ascii=False))
    b.remove("model/tokenizer/vocab.txt")
    b.regen_manifest()   # the fixture's embedding grows to the vocabulary
    ref = work / "reference.json"
    ref.write_bytes(b.path("model/tokenizer/tokenizer.json").read_bytes())
    env = dict(os.environ, NEXUS_RUNTIME_DIR=str(runtime))
    builds = {"ours": pathlib.Path(a.build), "base": pathlib.Path(a.base)}
    times = {k: [] for k in builds}
    note = ""
    for i in range(a.runs + 1):
        for name, d in builds.items():
            t = time.perf_counter()
            extra = ["--vocab-reference", str(ref)] if a.reference and name == "ours" else []
            r = subprocess.run([str(d / "bin" / "nexus"), "verify", "--json", "--no-sandbox",
                                *extra, str(b.root)], capture_output=True, text=True, env=env)
            secs = time.perf_counter() - t
            if i:
                times[name].append(secs)
            if name == "ours" and not note:
                rep = json.loads(r.stdout)
                note = next((f["message"] for f in rep["findings"]
                             if "the vocabularies hold" in f["message"]), "no bound finding")
    b.unlock()
    m = {k: statistics.median(v) for k, v in times.items()}
    print(f"{len(vocab)} tokens: {note}")
    print(f"verify median: ours {m['ours']:.2f} s, base {m['base']:.2f} s, "
          f"ratio {m['ours'] / m['base']:.2f}x, bound's cost {m['ours'] - m['base']:.2f} s "
          f"({a.runs} runs each, alternated)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
