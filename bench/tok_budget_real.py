#!/usr/bin/python3
"""Leak budget used by real-sized vocabularies (issue #22, docs/TRV.md).

The suite's tokenizers are small (8,000-30,000 entries trained on 3,000
lines of hard text), so the budget they use says little about a real
student's.  This trains real-sized tokenizers on a large public text and
puts each, configured as its model family ships it, into the suite's
hand-made bundle (tests/e2e/bundle_fixture.py), then reads the budget
`nexus verify --json --no-sandbox` reports (the `budget-total` or
`budget-exceeded` finding; 65,536 bytes is the default budget).

    /usr/bin/python3 bench/tok_budget_real.py [--build DIR] [--work DIR]
        [--corpus-mb 40] [--only NAME,...] [--spm-model PATH]...

--spm-model measures an existing SentencePiece Unigram model as well (in
the XLM-R configuration), e.g. one trained on CJK text.

Corpus: the King James Bible (Debian's bible-kjv: `bible -l100000
Ge1:1-Re22:21`) and then every README / copyright / *.txt / *.md under
/usr/share/doc (plain or gzip), in sorted path order, up to --corpus-mb.

Tokenizers (the npm `tokenizers` binding trains with its default trainers
only: 30,000 for WordPiece and BPE, no size option; sentencepiece's
spm_train takes any size):

    wp_30k       WordPiece, BERT-uncased configuration (npm, 30,000 + specials)
    bpe_bl_30k   byte-level BPE, GPT-2 configuration (npm, 30,000 + 256 bytes)
    bpe_sp_50k   BPE of 50,257 pieces with byte fallback, Llama configuration
                 (spm_train --model_type=bpe; merges as transformers' converter
                 derives them from the pieces, one per piece)
    uni_32k      Unigram of 32,000 pieces, T5/XLM-R configuration (spm_train)
    uni_big      Unigram as large as the corpus allows (spm_train
                 --vocab_size=250000 --hard_vocab_limit=false)
    uni_cjk_32k  Unigram of 32,000 pieces, XLM-R configuration, trained on
                 another corpus: the translations (msgstr) of every message
                 catalogue under /usr/share/locale/{zh_CN,zh_TW,ja,ko}
                 (about 7 MB on a machine with this project's packages).
                 The CJK character model (scripts/budget_cjk_gen.py) is
                 built from dictionaries, not from these catalogues.
"""
import argparse
import gzip
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

import bundle_fixture as bf  # noqa: E402
import tok_matrix as tm      # noqa: E402

NODE_MODULES = pathlib.Path(os.environ.get("NEXUS_NODE_MODULES",
                                           pathlib.Path.home() / ".cache/nexus/node_modules"))
DOC_NAME = re.compile(r"(^README|^copyright$|\.txt$|\.md$)(\.gz)?", re.I)


def corpus(path, mb):
    """KJV then Debian docs, one paragraph a line, up to mb megabytes."""
    limit, out = mb << 20, []
    kjv = subprocess.run(["bible", "-l100000", "Ge1:1-Re22:21"], capture_output=True,
                         text=True, check=True).stdout
    out.append(kjv)
    size = len(kjv.encode())
    for p in sorted(pathlib.Path("/usr/share/doc").rglob("*")):
        if size >= limit:
            break
        if not p.is_file() or p.is_symlink() or not DOC_NAME.search(p.name):
            continue
        try:
            raw = gzip.decompress(p.read_bytes()) if p.name.endswith(".gz") else p.read_bytes()
            text = raw.decode("utf-8")
        except (OSError, UnicodeDecodeError, EOFError):
            continue
        text = text.replace("\0", " ")
        out.append(text)
        size += len(text.encode())
    text = "\n".join(out)
    # one paragraph a line: spm_train's sentences, the npm trainers' lines
    lines = [l.strip() for l in text.replace("\r", " ").split("\n")]
    lines = [l for l in lines if l]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return size


def cjk_corpus(path):
    """The translations of Debian's Chinese, Japanese and Korean message
    catalogues, one message a line, in sorted path order."""
    import gettext
    lines = []
    for lang in ("zh_CN", "zh_TW", "ja", "ko"):
        for p in sorted(pathlib.Path("/usr/share/locale", lang, "LC_MESSAGES").glob("*.mo")):
            try:
                with open(p, "rb") as f:
                    cat = gettext.GNUTranslations(f)._catalog
            except (OSError, UnicodeDecodeError):
                continue
            for k, v in cat.items():
                if k and isinstance(v, str):
                    lines += [l.strip() for l in v.split("\n") if l.strip()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path.stat().st_size


def spm(corpus_path, prefix, model_type, size, extra=()):
    t = time.time()
    subprocess.run(["spm_train", f"--input={corpus_path}", f"--model_prefix={prefix}",
                    f"--vocab_size={size}", f"--model_type={model_type}",
                    "--character_coverage=0.9995", "--num_threads=2", "--minloglevel=2",
                    "--input_sentence_size=300000", "--shuffle_input_sentence=true",
                    "--max_sentence_length=8192", *extra],
                   check=True, capture_output=True, timeout=3600)
    return time.time() - t


def spm_bpe_llama(model_path, raw_metaspace):
    """A Llama-shaped BPE tokenizer.json from an spm BPE model: the pieces
    in spm's order (<unk> <s> </s>, the 256 byte tokens, then by merge
    rank), one merge per piece (its split whose halves came first)."""
    pieces, _ = tm.spm_model(model_path)
    vocab = {p: i for i, (p, _, _) in enumerate(pieces)}
    merges = []
    for i, (p, _, typ) in enumerate(pieces):
        if typ != 1 or len(p) < 2:
            continue
        best = None
        for k in range(1, len(p)):
            a, b = p[:k], p[k:]
            if a in vocab and b in vocab:
                key = max(vocab[a], vocab[b])
                if best is None or key < best[0]:
                    best = (key, a, b)
        if best:
            merges.append([best[1], best[2]])
    j = json.loads(json.dumps(raw_metaspace))
    j["model"]["vocab"] = vocab
    j["model"]["merges"] = merges
    j["added_tokens"] = []
    out = tm.byte_fallback_bpe(j, "llama")
    return out


def npm_tokenizers(work, want, toks):
    """wp_30k and bpe_bl_30k (those wanted) from the npm trainers' raw files
    in work, into toks; the raw files (bench/vocab_reference_real.py too)."""
    raw = {n: json.loads((work / f"raw_{n}.json").read_text(encoding="utf-8"))
           for n in ("wp_uncased", "bpe_bytelevel", "bpe_metaspace")}
    if want("wp_30k"):
        toks["wp_30k"] = tm.wordpiece(raw["wp_uncased"], cased=False)
    if want("bpe_bl_30k"):
        toks["bpe_bl_30k"] = tm.byte_level_bpe(raw["bpe_bytelevel"], "gpt2")
    return raw


def budget(nexus, runtime, work, name, tok):
    """(verdict, bytes used, findings of the budget check) for tok in the
    fixture bundle."""
    d = work / "bundles" / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    b = bf.Bundle(d / "nexus_bundle_v1", runtime)
    b.write("model/tokenizer/tokenizer.json", json.dumps(tok, ensure_ascii=False))
    b.regen_manifest()
    env = dict(os.environ, NEXUS_RUNTIME_DIR=str(runtime))
    t = time.time()
    r = subprocess.run([str(nexus), "verify", "--json", "--no-sandbox", str(b.root)],
                       capture_output=True, text=True, env=env, timeout=600)
    secs = time.time() - t
    rep = json.loads(r.stdout)
    fs = [f for f in rep["findings"] if f["check"] == "budget" or f["severity"] == "FAIL"]
    used, bound = None, None
    for f in fs:
        m = re.search(r"carries (\d+) bytes", f["message"])
        if m and f["code"] in ("budget-total", "budget-exceeded"):
            used = int(m.group(1))
        m = re.search(r"hold (\d+) tokens, (\d+) bytes compressed.* = (\d+) bytes, "
                      r"charged (\d+);.*: (\d+) bytes of the tokenizer", f["message"])
        if m:
            bound = dict(zip(("n", "L", "allow", "charged", "relief"), map(int, m.groups())))
    b.unlock()
    return rep["verdict"], used, bound, fs, secs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.environ.get("NEXUS_BUILD", ROOT / "build"))
    ap.add_argument("--work", default=ROOT / "build" / "tok_budget_real")
    ap.add_argument("--corpus-mb", type=int, default=40)
    ap.add_argument("--only", default="")
    ap.add_argument("--spm-model", action="append", default=[])
    a = ap.parse_args()
    work = pathlib.Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    nexus = pathlib.Path(a.build) / "bin" / "nexus"
    only = set(filter(None, a.only.split(",")))
    want = lambda n: not only or n in only  # noqa: E731

    text = work / "corpus.txt"
    if not text.exists() and (not only or only - {pathlib.Path(p).stem for p in a.spm_model}
                                              - {"uni_cjk_32k"}):
        print(f"corpus: {corpus(text, a.corpus_mb) / 1e6:.1f} MB", flush=True)
    toks = {}
    if want("wp_30k") or want("bpe_bl_30k") or want("bpe_sp_50k"):
        if not (work / "raw_bpe_metaspace.json").exists():
            t = time.time()
            env = dict(os.environ, NODE_PATH=str(NODE_MODULES), RAYON_NUM_THREADS="2")
            subprocess.run(["node", str(ROOT / "tests/e2e/tok_oracle.js"), "train", str(work),
                            str(text)], env=env, check=True, timeout=7200)
            print(f"npm trainers: {time.time() - t:.0f} s", flush=True)
        raw = npm_tokenizers(work, want, toks)
        if want("bpe_sp_50k"):
            if not (work / "bpe50k.model").exists():
                print(f"spm bpe 50257: {spm(text, work / 'bpe50k', 'bpe', 50257, ['--byte_fallback=true']):.0f} s",
                      flush=True)
            toks["bpe_sp_50k"] = spm_bpe_llama(work / "bpe50k.model", raw["bpe_metaspace"])
    for name, size in (("uni_32k", 32000), ("uni_big", 250000)):
        if not want(name):
            continue
        if not (work / f"{name}.model").exists():
            extra = ["--normalization_rule_name=nmt_nfkc", "--hard_vocab_limit=false"]
            print(f"spm unigram {size}: {spm(text, work / name, 'unigram', size, extra):.0f} s",
                  flush=True)
        toks[name] = tm.unigram_xlmr(work / f"{name}.model")

    if want("uni_cjk_32k"):
        cjk = work / "cjk.txt"
        if not cjk.exists():
            print(f"cjk corpus: {cjk_corpus(cjk) / 1e6:.1f} MB", flush=True)
        if not (work / "uni_cjk_32k.model").exists():
            extra = ["--normalization_rule_name=nmt_nfkc", "--hard_vocab_limit=false"]
            print(f"spm unigram cjk 32000: {spm(cjk, work / 'uni_cjk_32k', 'unigram', 32000, extra):.0f} s",
                  flush=True)
        toks["uni_cjk_32k"] = tm.unigram_xlmr(work / "uni_cjk_32k.model")
    for p in a.spm_model:
        toks[pathlib.Path(p).stem] = tm.unigram_xlmr(p)
    runtime = work / "runtime"
    if not runtime.exists():
        bf.make_runtime(runtime)
    # L: the vocabulary stream's zstd size (tier 2), a*N its allowance,
    # charged what it charged; tier 1 relief: bytes of the per-token charge
    # returned past 32,000 tokens
    print(f"{'tokenizer':<12} {'entries':>8} {'verdict':>7} {'budget used':>12} {'L':>8} "
          f"{'L/N':>5} {'a*N':>8} {'charged':>8} {'relief':>7} {'verify':>7}")
    for name, tok in toks.items():
        n = len(tok["model"]["vocab"])
        verdict, used, bd, fs, secs = budget(nexus, runtime, work, name, tok)
        bd = bd or dict(n=1, L=0, allow=0, charged=0, relief=0)
        print(f"{name:<12} {n:>8} {verdict:>7} {used if used is not None else '-':>12} "
              f"{bd['L']:>8} {bd['L'] / bd['n']:>5.2f} {bd['allow']:>8} {bd['charged']:>8} "
              f"{bd['relief']:>7} {secs:>6.1f}s", flush=True)
        for f in fs:
            if f["code"] not in ("budget-total", "budget-used") and (
                    f["severity"] == "FAIL" or "tokenizer" in f.get("path", "")):
                print(f"    {f['severity']} {f['code']} {f.get('path', '')}: {f['message'][:200]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
