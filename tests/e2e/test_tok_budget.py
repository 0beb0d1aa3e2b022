"""The leak budget's tokenizer.json schema (verify_tokjson.c) on the real
tokenizer families of the parity matrix: each one PASSes the schema (the
types the engine reads are known parts), an unknown key inside a nested
Sequence still FAILs, and a BPE merge list reordered to carry data is
charged where one in training order costs nothing."""
import json
import random
import shutil

import pytest

from test_tok_matrix import matrix  # noqa: F401  (the fixture)
from verify_helpers import codes, verify

FAMILIES = ["wp_cased", "bpe_gpt2", "bpe_roberta", "bpe_llama", "bpe_qwen2", "unigram_xlmr",
            "wordlevel", "hand_wp", "hand_bpe"]


def put(bundle, tok):
    bundle.write("model/tokenizer/tokenizer.json", json.dumps(tok, ensure_ascii=False))
    bundle.regen_manifest()


def schema_fails(rep):
    return [f for f in rep["findings"] if f["code"] == "tokenizer-schema"]


@pytest.mark.parametrize("name", FAMILIES)
def test_real_families_pass_the_schema(nexus, bundle, matrix, name):
    tok = json.loads((matrix[1][name] / "tokenizer.json").read_text(encoding="utf-8"))
    put(bundle, tok)
    rc, rep = verify(nexus, bundle)
    assert not schema_fails(rep), schema_fails(rep)


def test_unknown_key_in_a_nested_sequence_fails(nexus, bundle, matrix):
    tok = json.loads((matrix[1]["hand_wp"] / "tokenizer.json").read_text(encoding="utf-8"))
    tok["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Sequence", "normalizers": [{"type": "NFC", "stash": "x"}]}]}
    put(bundle, tok)
    rc, rep = verify(nexus, bundle)
    assert rc == 1 and "tokenizer-schema" in codes(rep, "FAIL"), rep["findings"]


def test_reordered_merges_are_charged(nexus, bundle, matrix):
    tok = json.loads((matrix[1]["bpe_gpt2"] / "tokenizer.json").read_text(encoding="utf-8"))
    put(bundle, tok)
    _, rep = verify(nexus, bundle)
    base = budget_of(rep)
    random.Random(5).shuffle(tok["model"]["merges"])
    put(bundle, tok)
    _, rep = verify(nexus, bundle)
    assert budget_of(rep) > base + 10000, (base, budget_of(rep))


def budget_of(rep):
    import re
    f = next(f for f in rep["findings"] if f["code"] in ("budget-total", "budget-exceeded"))
    return int(re.search(r"carries (\d+) bytes", f["message"]).group(1))


def vocab_fails(rep):
    return [f for f in rep["findings"] if f["code"] == "vocab-entry-suspicious"]


def with_tokens(nexus, bundle, tokens):
    tok = json.loads(bundle.path("model/tokenizer/tokenizer.json").read_text(encoding="utf-8"))
    v = tok["model"]["vocab"]
    for t in tokens:
        v[t] = len(v)
    put(bundle, tok)
    return verify(nexus, bundle)


@pytest.mark.parametrize("tokens", [
    ["Ġ" * 150],                                   # 150 spaces, byte-level (300 bytes)
    ["âĶĢ" * 60, "¼" + "âĶĢ" * 60],                # a box-drawing line, and one cut mid-character
], ids=["spaces", "box-line"])
def test_long_runs_in_a_real_bpe_vocabulary(nexus, bundle, tokens):
    """Byte-level BPE trained on code and documentation (bench/tok_budget_real.py,
    30,000 tokens on KJV + /usr/share/doc) learns runs of spaces and of
    box-drawing characters over 200 bytes: a short head and one repeated
    unit carry nothing but their length, so they pass the entry cap."""
    rc, rep = with_tokens(nexus, bundle, tokens)
    assert not vocab_fails(rep), vocab_fails(rep)


def test_long_random_entry_still_fails(nexus, bundle):
    import numpy as np
    rnd = np.random.default_rng(3)
    letters = "abcdefghijklmnopqrstuvwxyz"
    tok = "".join(letters[i] for i in rnd.integers(0, 26, 250))
    rc, rep = with_tokens(nexus, bundle, [tok])
    assert rc == 1 and vocab_fails(rep), rep["findings"]

@pytest.mark.parametrize("shape", ["long-unit", "long-head"])
def test_long_entry_that_is_not_a_run_still_fails(nexus, bundle, shape):
    """A run's unit and head are at most 16 bytes: a 64-byte block repeated,
    or 100 bytes of data before a run, is an entry over the cap."""
    import numpy as np
    letters = "abcdefghijklmnopqrstuvwxyz"
    data = "".join(letters[i] for i in np.random.default_rng(4).integers(0, 26, 100))
    tok = data[:64] * 4 if shape == "long-unit" else data + "=" * 150
    rc, rep = with_tokens(nexus, bundle, [tok])
    assert rc == 1 and vocab_fails(rep), rep["findings"]


# identifiers of GCC's headers, as a WordPiece trained on /usr/share/doc learns them
IDENTIFIERS = ["avx512vp2intersectintrin", "avx512vp2intersectvlintrin", "avx512vpopcntdqvlintrin",
               "avx5124fmapsintrin", "AVX512VP2INTERSECTINTRIN"]


def test_identifiers_with_digits_pass_and_are_charged(nexus, bundle):
    """A docs-trained WordPiece holds identifiers of 24+ letters and digits:
    they are no encoded blob (one case, few letter/digit switches), but no
    plausible token either, so the budget charges their bytes."""
    _, rep = verify(nexus, bundle)
    base = budget_of(rep)
    rc, rep = with_tokens(nexus, bundle, IDENTIFIERS)
    assert not vocab_fails(rep), vocab_fails(rep)
    assert budget_of(rep) >= base + 40, (base, budget_of(rep))


@pytest.mark.parametrize("alphabet", ["0123456789abcdef", "0123456789ABCDEF",
                                      "abcdefghijklmnopqrstuvwxyz234567",
                                      "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"],
                         ids=["hex", "HEX", "base32-lower", "base32"])
def test_hex_and_base32_entries_still_fail(nexus, bundle, alphabet):
    import numpy as np
    rnd = np.random.default_rng(7)
    toks = ["".join(alphabet[i] for i in rnd.integers(0, len(alphabet), 32)) for _ in range(8)]
    rc, rep = with_tokens(nexus, bundle, toks)
    assert rc == 1 and len(vocab_fails(rep)) >= 1, rep["findings"]
