"""Unigram tokenizers through verify (issues #16, #22): a Unigram
vocabulary's scores are the model's parameters (SentencePiece's
log-probabilities), judged by their grammar - finite, in [-64, 0], float32,
in SentencePiece's order (score descending, then piece ascending) - instead
of being charged to the 64 KiB leak budget byte for byte; the stated
capacity of what that grammar leaves free is in docs/TRV.md ("Unigram
scores").  A generated 250,000-piece Unigram passes with the default
budget; data hidden in the scores beyond that capacity (in their order, in
double precision, out of range) FAILs."""
import json
import math

import numpy as np
import pytest

from test_tok_budget import budget_of, put
from verify_helpers import codes, verify

N = 250_000


# the 64 ideographs of lowest unigram cost in the leak budget's CJK model
# (src/lib/scan/budget_cjk.zst, at most 9.9 bits each)
COMMON = ("一三上下不中之二人來兒出分北南原去取口合和國地大天子学學家寺小山島川工市"
          "平心手打新日有木本東業水無生田町的神立行西見道野金長頭高")


def pieces(n):
    """n distinct pieces a grammar explains (three of the commonest CJK
    ideographs: any three cost at most 3 x 9.9 + 2 x 1.75 bits, under the
    34 bits the model lets a 3-character token cost), half with
    SentencePiece's word-start mark."""
    side = len(COMMON)
    assert n <= side ** 3
    out = [COMMON[i // side // side] + COMMON[i // side % side] + COMMON[i % side]
           for i in range(n)]
    return ["\u2581" + w if i % 2 else w for i, w in enumerate(out)]


def unigram(n=N, seed=0):
    """A tokenizer.json as spm_train + the Hugging Face converter write it:
    specials at score 0, then pieces by score (log-probabilities of a
    Zipf-like law, float32) descending."""
    rng = np.random.default_rng(seed)
    ps = pieces(n - 3)
    scores = (-np.log(np.arange(2, n - 1, dtype=np.float64)) - 3.0 +
              rng.normal(0, 0.05, n - 3)).astype(np.float32)
    body = sorted(zip(scores.tolist(), ps), key=lambda t: (-t[0], t[1].encode()))
    vocab = [["<unk>", 0.0], ["<s>", 0.0], ["</s>", 0.0]] + [[p, s] for s, p in body]
    return {
        "version": "1.0",
        "truncation": None, "padding": None,
        "added_tokens": [{"id": i, "content": t, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}
                         for i, t in enumerate(["<unk>", "<s>", "</s>"])],
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581",
                          "prepend_scheme": "always", "split": True},
        "post_processor": None,
        "decoder": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always",
                    "split": True},
        "model": {"type": "Unigram", "unk_id": 0, "vocab": vocab, "byte_fallback": False},
    }


def verify_tok(nexus, bundle, tok):  # noqa: F811
    put(bundle, tok)
    return verify(nexus, bundle, timeout=300)


def test_250k_unigram_passes_the_default_budget(nexus, bundle):  # noqa: F811
    rc, rep = verify_tok(nexus, bundle, unigram())
    assert rc == 0, [f for f in rep["findings"] if f["severity"] == "FAIL"]
    used = budget_of(rep)
    print(f"\n250,000-piece Unigram: leak budget {used} bytes of 65536")
    assert used < 65536 // 2


def test_scores_out_of_order_carry_data_and_fail(nexus, bundle):  # noqa: F811
    """The [piece, score] entries in an order of the insider's choosing
    (ids are positions: the order would carry about 16 bits per piece);
    each piece out of SentencePiece's order is charged."""
    tok = unigram()
    v = tok["model"]["vocab"]
    perm = np.random.default_rng(1).permutation(len(v) - 3) + 3
    tok["model"]["vocab"] = v[:3] + [v[i] for i in perm]
    rc, rep = verify_tok(nexus, bundle, tok)
    assert rc == 1 and "budget-exceeded" in codes(rep, "FAIL"), rep["findings"][-3:]


def test_scores_in_double_precision_are_charged(nexus, bundle):  # noqa: F811
    """32 bits of data in the low half of every score's double."""
    tok = unigram()
    rng = np.random.default_rng(2)
    for e in tok["model"]["vocab"][3:]:
        bits = np.array([e[1]], np.float64).view(np.uint64)[0]
        e[1] = float(np.array([bits ^ np.uint64(rng.integers(1, 2 ** 28))],
                              np.uint64).view(np.float64)[0])
    rc, rep = verify_tok(nexus, bundle, tok)
    assert rc == 1 and "budget-exceeded" in codes(rep, "FAIL"), rep["findings"][-3:]


@pytest.mark.parametrize("bad", [0.5, -100.0, float("nan")])
def test_scores_out_of_range_fail(nexus, bundle, bad):  # noqa: F811
    tok = unigram(2000)
    tok["model"]["vocab"][500][1] = bad
    put(bundle, tok)
    if math.isnan(bad):   # JSON has no NaN: Python writes it anyway, jansson refuses it
        bundle.write("model/tokenizer/tokenizer.json",
                     json.dumps(tok, ensure_ascii=False, allow_nan=True))
        bundle.regen_manifest()
    rc, rep = verify(nexus, bundle)
    assert rc == 1 and codes(rep, "FAIL") & {"tokenizer-schema", "config-unparsable"}, \
        rep["findings"]


def test_documented_limit_low_bits_of_sorted_scores(nexus, bundle):  # noqa: F811
    """What the grammar leaves free (docs/TRV.md, "Unigram scores"): the
    low mantissa bits of float32 scores kept in order.  It passes on
    purpose; the capacity is the stated number, not the 64 KiB budget."""
    tok = unigram()
    v = tok["model"]["vocab"]
    rng = np.random.default_rng(3)
    prev = 0.0
    for e in v[3:]:
        s = np.float32(e[1])
        s = (np.array([s], np.float32).view(np.uint32) ^ np.uint32(rng.integers(0, 4))) \
            .view(np.float32)[0]
        e[1] = float(min(s, np.float32(prev)))
        prev = e[1]
    tok["model"]["vocab"] = v[:3] + sorted(v[3:], key=lambda t: (-t[1], t[0].encode()))
    rc, rep = verify_tok(nexus, bundle, tok)
    assert rc == 0, [f for f in rep["findings"] if f["severity"] == "FAIL"]


# --- the Precompiled charsmap, judged by its grammar -------------------------
@pytest.fixture(scope="module")
def spm_charsmap(tmp_path_factory):
    """spm_train's nmt_nfkc charsmap (its built-in rule, known by its hash)."""
    import shutil
    import subprocess
    import tok_matrix
    if not shutil.which("spm_train"):
        pytest.skip("spm_train (Debian sentencepiece) is not installed")
    d = tmp_path_factory.mktemp("spm")
    (d / "c.txt").write_text("\n".join(["free money now", "Ｆｕｌｌ ｗｉｄｔｈ", "café naïve"] * 50))
    subprocess.run(["spm_train", f"--input={d / 'c.txt'}", f"--model_prefix={d / 'm'}",
                    "--vocab_size=30", "--model_type=unigram", "--hard_vocab_limit=false",
                    "--normalization_rule_name=nmt_nfkc", "--minloglevel=2"],
                   check=True, capture_output=True, timeout=120)
    return tok_matrix.spm_model(d / "m.model")[1]


def with_charsmap(raw):
    import base64
    tok = unigram(2000)
    tok["normalizer"] = {"type": "Precompiled",
                         "precompiled_charsmap": base64.b64encode(raw).decode()}
    return tok


def charsmap_finding(rep):
    return next((f["message"] for f in rep["findings"] if f["code"] == "charsmap-explained"), None)


def test_unknown_charsmap_is_explained_by_unicode(nexus, bundle, spm_charsmap):  # noqa: F811
    """nmt_nfkc with one byte more (another spm version, another hash):
    walked as the runtime walks it, its 224,725 keys map as NFKC (and the
    nmt rules) say, so only the stray byte and a handful of entries are
    charged - not its 237 KB."""
    rc, rep = verify_tok(nexus, bundle, with_charsmap(spm_charsmap + b"\0"))
    assert rc == 0, [f for f in rep["findings"] if f["severity"] == "FAIL"]
    msg = charsmap_finding(rep)
    assert msg and "not a walkable trie" not in msg, msg
    print(f"\nnmt_nfkc, unknown hash: {msg}; leak budget {budget_of(rep)} bytes")
    assert budget_of(rep) < 4096


@pytest.mark.parametrize("where", ["blob", "trie"])
def test_data_hidden_in_a_charsmap_is_charged(nexus, bundle, spm_charsmap, where):  # noqa: F811
    """80 KiB of random bytes where the runtime never reads: after the
    strings (blob) or in trie units no key reaches."""
    import struct
    secret = np.random.default_rng(4).bytes(80 << 10)
    raw = spm_charsmap
    if where == "trie":
        n = struct.unpack("<I", raw[:4])[0]
        raw = struct.pack("<I", n + len(secret)) + raw[4:4 + n] + secret + raw[4 + n:]
    else:
        raw = raw + secret
    rc, rep = verify_tok(nexus, bundle, with_charsmap(raw))
    assert rc == 1 and "budget-exceeded" in codes(rep, "FAIL"), rep["findings"][-3:]


# Essential and important packages whose message catalogues every Debian
# system has: the CJK model (scripts/budget_cjk_gen.py) is built from word
# lists, never from these.
CATALOGUES = ("coreutils", "bash", "dpkg", "grep", "sed", "tar", "findutils", "diffutils",
              "apt", "libapt-pkg6.0")


def cjk_corpus(path):
    import gettext
    import pathlib
    lines = []
    for lang in ("zh_CN", "zh_TW", "ja", "ko"):
        for pkg in CATALOGUES:
            p = pathlib.Path("/usr/share/locale", lang, "LC_MESSAGES", pkg + ".mo")
            if p.exists():
                with open(p, "rb") as f:
                    cat = gettext.GNUTranslations(f)._catalog
                lines += [l.strip() for k, v in cat.items() if k and isinstance(v, str)
                          for l in v.split("\n") if l.strip()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path.stat().st_size


def test_real_cjk_unigram_passes_well_under_the_budget(nexus, bundle, tmp_path):
    """A Unigram trained by spm_train on the Chinese, Japanese and Korean
    translations of Debian's core tools: its CJK and Hangul pieces of 4+
    characters were all charged before the CJK model (a 32,000-piece one
    used 76,804 bytes, bench/tok_budget_real.py); now the model explains
    most of them.  Measured: 8,001 pieces, 1,427 CJK ones of 4+ characters,
    5,282 bytes of budget (12,854 under the old 3-character rule)."""
    import shutil
    import subprocess
    import tok_matrix as tm
    if not shutil.which("spm_train"):
        pytest.skip("spm_train (Debian's sentencepiece) not installed")
    size = cjk_corpus(tmp_path / "cjk.txt")
    if size < 500_000:
        pytest.skip(f"only {size} bytes of CJK message catalogues on this machine")
    subprocess.run(["spm_train", f"--input={tmp_path / 'cjk.txt'}",
                    f"--model_prefix={tmp_path / 'cjk'}", "--vocab_size=8000",
                    "--model_type=unigram", "--character_coverage=0.9995",
                    "--normalization_rule_name=nmt_nfkc", "--hard_vocab_limit=false",
                    "--num_threads=2", "--minloglevel=2"], check=True, capture_output=True,
                   timeout=600)
    tok = tm.unigram_xlmr(tmp_path / "cjk.model")
    long_cjk = [p for p, _ in tok["model"]["vocab"]
                if len(p.lstrip("\u2581")) >= 4 and all(
                    "\u3040" <= c <= "\u9fff" or "\uac00" <= c <= "\ud7af" for c in p.lstrip("\u2581"))]
    assert len(long_cjk) > 500, len(long_cjk)
    rc, rep = verify_tok(nexus, bundle, tok)
    assert not codes(rep, "FAIL"), [f for f in rep["findings"] if f["severity"] == "FAIL"]
    print(f"{len(tok['model']['vocab'])} pieces, {len(long_cjk)} CJK of 4+ characters, "
          f"{size} bytes of corpus: budget {budget_of(rep)}")
    assert budget_of(rep) < 8192, budget_of(rep)
