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
