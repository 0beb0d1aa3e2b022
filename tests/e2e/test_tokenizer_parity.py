"""Parity of nexus_cli's WordPiece tokenizer with Hugging Face `tokenizers`.

Runs when node and the npm package `tokenizers` (>= 0.15, which ships its
linux-x64-gnu native binary inside the package) are available: found through
NODE_PATH, $NEXUS_TOKENIZERS_NODE_MODULES, ./node_modules or
/tmp/tokparity/node_modules (`cd /tmp/tokparity && npm install tokenizers`).
Otherwise it is skipped with the reason; the rest of the suite does not need it.
"""
import json
import os
import pathlib
import random
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import tokfixture  # noqa: E402
from conftest import ROOT, run  # noqa: E402

HERE = pathlib.Path(__file__).parent


def node_modules():
    cache = os.environ.get("NEXUS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "nexus")
    cands = [os.environ.get("NEXUS_TOKENIZERS_NODE_MODULES"),
             os.path.join(cache, "node_modules"), str(ROOT / "node_modules"),
             "/tmp/tokparity/node_modules"]
    cands += os.environ.get("NODE_PATH", "").split(":")
    for c in cands:
        if c and (pathlib.Path(c) / "tokenizers" / "package.json").is_file():
            return c
    return None


def hf_available():
    if not shutil.which("node"):
        return None, "node is not installed"
    nm = node_modules()
    if not nm:
        return None, ("npm package 'tokenizers' not found (cd /tmp/tokparity && "
                      "npm install tokenizers)")
    probe = subprocess.run(["node", "-e", "require('tokenizers').Tokenizer"],
                           env=dict(os.environ, NODE_PATH=nm), capture_output=True, text=True)
    if probe.returncode != 0:
        return None, "npm package 'tokenizers' has no native binary here: " + probe.stderr[-200:]
    return nm, None


PIECES = [
    "hello", "Hello", "WORLD", "free money", "click now!", "unable", "playing", "played",
    "tokenization", "Café", "naïve", "RÉSUMÉ", "Über", "Straße", "ÅNGSTRÖM", "İstanbul",
    "ΣΟΦΙΑ", "σοφία", "中文", "日本語", "國人", "한국어", "😀", "👍🏽", "🫠", "🧑‍💻",
    "\x00", "\x01", "\x7f", "\u200b", "\u00ad", "\ufeff", "\ufffd", "\t", "\u3000", "\u00a0",
    "\u2028", "\x0b", "\x0c", "\x85", "...", "?!", "¿", "¡", "«", "»", "—", "…", "“quoted”",
    "'s", "n't", "e-mail", "a_b", "$100", "50%", "#tag", "@user", "x^2", "~", "`", "|",
    "[MASK]", "[CLS]", "[SEP]", "[UNK]", "[PAD]", "[cls]", "[ MASK]", "abc123", "3.14",
    "ǅ", "ﬁ", "Ⅻ", "①", "ｆｕｌｌ", "ｗｉｄｔｈ", "é", "é", "ñ", "ç", "Ø", "Ł", "ı",
    "𝐁𝐨𝐥𝐝", "\U0002a6d6", "\U00030000", "\uf900", "\u0301", "a\u0301", "\u0640",
    "अनुच्छेद", "مرحبا", "שלום", "ไทย", "Привет", "мир",
]


def corpus(n=10000, seed=1234):
    rnd = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZéüßøåÉÜ0123456789"
    lines = []
    for i in range(n):
        kind = i % 10
        if kind == 0 and i % 50 == 0:
            lines.append("")
            continue
        parts = []
        for _ in range(rnd.randint(1, 25)):
            r = rnd.random()
            if r < 0.55:
                parts.append(rnd.choice(PIECES))
            elif r < 0.8:
                parts.append("".join(rnd.choice(letters) for _ in range(rnd.randint(1, 12))))
            elif r < 0.83:
                parts.append("".join(rnd.choice(letters) for _ in range(rnd.randint(95, 130))))
            else:
                parts.append(chr(rnd.choice([rnd.randint(0x21, 0x7e), rnd.randint(0xa0, 0x2fff),
                                             rnd.randint(0x3000, 0x9fff),
                                             rnd.randint(0x1f300, 0x1faff)])))
        sep = rnd.choice([" ", "", "  ", "\t", " \u3000 "])
        lines.append(sep.join(parts))
    return lines


@pytest.mark.parametrize("variant", [
    {"lowercase": True, "strip_accents": None, "max_len": 64},
    {"lowercase": False, "strip_accents": None, "max_len": 512},
    {"lowercase": True, "strip_accents": False, "max_len": 16},
    {"lowercase": False, "strip_accents": True, "max_len": 128, "max_chars": 20},
])
def test_ids_equal_hf_tokenizers(nexus_cli, tmp_path, variant):
    nm, why = hf_available()
    if not nm:
        pytest.skip(why)
    variant = dict(variant)
    max_len = variant.pop("max_len")
    tokdir = tmp_path / "tok"
    tokfixture.write(str(tokdir), **variant)
    lines = corpus()
    assert len(lines) >= 10000
    data = tmp_path / "corpus.jsonl"
    data.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in lines),
                    encoding="utf-8")
    hf = subprocess.run(["node", str(HERE / "tok_parity.js"), str(tokdir / "tokenizer.json"),
                         str(data), str(max_len), str(tmp_path / "hf.jsonl")], env=dict(os.environ, NODE_PATH=nm),
                        capture_output=True, text=True, timeout=600)
    assert hf.returncode == 0, hf.stderr
    mine = run(nexus_cli, "tokenize", "--tokenizer", tokdir, "--max-length", max_len,
               "--input", data)
    assert mine.returncode == 0, mine.stderr
    want = (tmp_path / "hf.jsonl").read_text().splitlines()
    got = mine.stdout.splitlines()
    assert len(got) == len(want) == len(lines)
    bad = [(i, lines[i], got[i], want[i]) for i in range(len(lines))
           if json.loads(got[i]) != json.loads(want[i])]
    assert not bad, f"{len(bad)} lines differ; first: {bad[:3]!r}"
