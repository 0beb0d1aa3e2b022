"""Capacity outside the weights: data carried as literals, encoded text, tokens
or selftest numbers. (Regrouped by check from the red-team files by
scripts/dev/regroup_tests.py.)
"""
import base64
import json

import numpy as np
import pytest

import bundle_fixture as bf
import workspace as ws
from onnx_smuggling import smuggle_tokenizer, tokenizer
from smuggling import (floats, py_bytes_literal, py_float_list, py_int_tuple, py_spaced_hex,
    py_wrapped_base64)
from token_payloads import CASES, official_build_refuses, teacher_bytes
from verify_helpers import codes, expect_fail, verify
from insider_doors import LAYOUT


def test_hex_blob_in_python_string(nexus, bundle):
    bundle.smuggle("src/helpers.py", f'W = "{floats(4096).tobytes().hex()}"\n')
    expect_fail(nexus, bundle, "base64-blob")


def test_base64_in_license(nexus, bundle):
    bundle.smuggle("LICENSE", "MIT\n" + base64.b64encode(floats(4096).tobytes()).decode() + "\n")
    expect_fail(nexus, bundle, "base64-blob")


@pytest.mark.parametrize("make", [py_float_list, py_bytes_literal, py_wrapped_base64,
                                  py_spaced_hex, py_int_tuple],
                         ids=["float-list", "bytes-escapes", "wrapped-base64", "spaced-hex",
                              "int-tuple"])
def test_weights_as_python_literal(nexus, bundle, make):
    bundle.smuggle("src/helpers.py", make())
    expect_fail(nexus, bundle, "literal-blob")


def test_weights_as_json_array_in_selftest(nexus, bundle):
    st = json.loads(bundle.path("config/selftest.json").read_text())
    st["cache"] = [float(x) for x in floats(4096)]
    bundle.smuggle("config/selftest.json", json.dumps(st))
    expect_fail(nexus, bundle, "selftest-malformed")


def test_weights_as_golden_outputs_without_sandbox(nexus, bundle):
    """Golden numbers only TRV-5 can account for are capped when it is off."""
    st = json.loads(bundle.path("config/selftest.json").read_text())
    st["cases"][0]["outputs"]["hidden"] = [float(x) for x in floats(4096)]
    bundle.smuggle("config/selftest.json", json.dumps(st))
    expect_fail(nexus, bundle, "literal-blob")


def test_loose_selftest_tolerance(nexus, bundle):
    """A huge tolerance would let any numbers pass as outputs."""
    st = json.loads(bundle.path("config/selftest.json").read_text())
    st["tolerance"] = 1e30
    bundle.smuggle("config/selftest.json", json.dumps(st))
    expect_fail(nexus, bundle, "selftest-malformed")


def test_weights_as_selftest_texts(nexus, bundle):
    st = json.loads(bundle.path("config/selftest.json").read_text())
    blob = base64.b64encode(floats(4096).tobytes()).decode()
    st["cases"] += [{"text": " ".join(blob[i:i + 60] for i in range(j, j + 3000, 60)),
                     "outputs": {"logits": [0.5, 0.5]}} for j in range(0, 18000, 3000)]
    bundle.smuggle("config/selftest.json", json.dumps(st))
    expect_fail(nexus, bundle, "literal-blob")


def test_weights_as_yaml_list(nexus, bundle):
    bundle.smuggle("config/runtime.yaml", bf.RUNTIME_YAML + "labels_prior:\n" +
                   "".join(f"  - {x:.6g}\n" for x in floats(4096)))
    expect_fail(nexus, bundle, "literal-blob")


def test_wrapped_base64_in_readme(nexus, bundle):
    bundle.smuggle("README.md", "# Spam\n\n" + base64.encodebytes(floats(4096).tobytes()).decode())
    expect_fail(nexus, bundle, "literal-blob")


def test_vocab_txt_carrying_a_tensor(nexus, bundle):
    b = base64.b64encode(floats(16384).tobytes()).decode()
    entries = [b[i:i + 64] for i in range(0, len(b), 64)]
    bundle.smuggle("model/tokenizer/vocab.txt", "\n".join(bf.VOCAB + entries) + "\n")
    expect_fail(nexus, bundle, "vocab-entry-suspicious")


def test_tokenizer_vocab_carrying_a_tensor(nexus, bundle):
    tok = json.loads(bundle.path("model/tokenizer/tokenizer.json").read_text())
    b = floats(16384).tobytes().hex()
    for i in range(0, len(b), 32):
        tok["model"]["vocab"][b[i:i + 32]] = len(tok["model"]["vocab"])
    bundle.smuggle("model/tokenizer/tokenizer.json", json.dumps(tok))
    expect_fail(nexus, bundle, "vocab-entry-suspicious")


@pytest.mark.parametrize("where", ["top-level", "merges", "normalizer", "added-token"])
def test_numbers_in_tokenizer_json_outside_the_vocab(nexus, bundle, where):
    """Only vocabulary entries are exempt from the literal-data rule: 64 KiB
    of floats under any other key of tokenizer.json (which the runtime
    ignores) is a tensor."""
    tok = tokenizer(bundle)
    data = [float(x) for x in floats(16384)]
    if where == "top-level":
        tok["cache"] = data
    elif where == "merges":
        tok["model"]["merges"] = data
    elif where == "normalizer":
        tok["normalizer"]["weights"] = data
    else:
        tok["added_tokens"] = [{"id": i, "content": f"[X{i}]", "scale": x}
                               for i, x in enumerate(data[:4096])]
    smuggle_tokenizer(bundle, tok)
    expect_fail(nexus, bundle, "literal-blob")


def test_vocab_ids_carrying_a_tensor(nexus, bundle):
    """WordPiece ids are 0..n-1: ids that are 32-bit words of a tensor are
    not ids."""
    tok = tokenizer(bundle)
    words = np.frombuffer(floats(4096).tobytes(), dtype=np.uint32)
    for i, w in enumerate(words):
        tok["model"]["vocab"][f"w{i}x"] = int(w)
    smuggle_tokenizer(bundle, tok)
    expect_fail(nexus, bundle, "vocab-entry-suspicious")


def test_vocab_ids_repeated(nexus, bundle):
    tok = tokenizer(bundle)
    for i in range(64):
        tok["model"]["vocab"][f"extra{i}"] = i % 3
    smuggle_tokenizer(bundle, tok)
    expect_fail(nexus, bundle, "vocab-entry-suspicious")


@pytest.mark.parametrize("fmt", ["decimal-words", "short-words-repeated"])
def test_vocab_txt_of_numbers(nexus, bundle, fmt):
    """A vocab.txt of 10-digit numbers (the runtime never reads it when
    tokenizer.json is there) is 64 KiB of float32 in decimal; four-digit
    numbers carry as much once entries may repeat."""
    words = np.frombuffer(floats(16384).tobytes(), dtype=np.uint32)
    if fmt == "decimal-words":
        lines = [str(int(w)) for w in words]
    else:
        lines = [f"{int(w) % 10000:04d}" for w in words]
    bundle.smuggle("model/tokenizer/vocab.txt", "\n".join(bf.VOCAB + lines) + "\n")
    expect_fail(nexus, bundle, "vocab-entry-suspicious")


def test_real_tokenizer_numbers_are_fine(nexus, bundle):
    """Numeric tokens, added tokens and a post-processor are what real
    tokenizers hold."""
    tok = tokenizer(bundle)
    vocab = tok["model"]["vocab"]
    for n in list(range(0, 2100)) + [10000, 100000, 1000000]:
        for w in (str(n), "##" + str(n)):
            vocab.setdefault(w, len(vocab))
    tok["added_tokens"] = [{"id": i, "content": t, "single_word": False, "lstrip": False,
                            "rstrip": False, "normalized": False, "special": True}
                           for i, t in enumerate(bf.VOCAB[:4])]
    tok["post_processor"] = {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]}
    tok["model"]["max_input_chars_per_word"] = 100
    smuggle_tokenizer(bundle, tok)
    inv = sorted(vocab, key=vocab.get)
    bundle.smuggle("model/tokenizer/vocab.txt", "\n".join(inv) + "\n")
    rc, rep = verify(nexus, bundle)
    assert codes(rep, "FAIL") == set() and codes(rep, "WARN") == {"unsigned"}, rep["findings"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_insider_teacher_bytes_in_tokens_refused(nexus, tmp_path, release_key_file, name):
    enc, dec, code, *seed = CASES[name]
    root = ws.make_workspace(tmp_path / "ws")
    raw = teacher_bytes(*seed)
    enc(root, raw)
    assert dec(root) == raw, "the case's own decoder must get the teacher bytes back"
    official_build_refuses(nexus, root, tmp_path, release_key_file, code)


def test_overlong_vocab_entry_is_smuggling(nexus, bundle):
    # not a run (a run - a head and one short unit repeated - carries only
    # its length, and passes: test_tok_budget.py)
    entry = "".join(f"x{i}!" for i in range(150))
    bundle.smuggle("model/tokenizer/vocab.txt", "\n".join(bf.VOCAB + [entry]) + "\n")
    expect_fail(nexus, bundle, "vocab-entry-suspicious")


@pytest.mark.parametrize("name", sorted(LAYOUT))
def test_insider_teacher_bytes_in_json_layout_refused(nexus, tmp_path, release_key_file, name):
    from token_payloads import teacher_bytes
    enc, dec = LAYOUT[name]
    root = ws.make_workspace(tmp_path / "ws")
    raw = teacher_bytes()
    enc(root, raw)
    assert dec(root) == raw, "the case's own decoder must get the teacher bytes back"
    official_build_refuses(nexus, root, tmp_path, release_key_file, "budget-exceeded")
