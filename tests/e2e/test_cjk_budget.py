"""Issue 22, the leak budget's long-token hole: a vocabulary token was free
when it read like a word, however long - a CJK token of n characters that
cost at most 4 + 10n bits under the budget's own character model, an
English-like word whose letters averaged at most 4.5 bits.  An encoder that
walks the same model (cjk_stego.py) hid about 6 bits a character, 93 bits
in a 16-character token, so a vocabulary of such tokens carried a 64 KiB
teacher tensor past the budget uncharged.  Every variant below must now
be charged and FAIL `budget-exceeded`: long tokens, tokens of hanzi, kana
and Hangul in turn, tokens spread over the vocabulary, a BPE's merges and
added_tokens, and long English-like words."""
import json

import pytest

import cjk_stego as stego
from token_payloads import teacher_bytes
from verify_helpers import codes, verify


def put_vocab(bundle, tokens):
    """New WordPiece entries at the end of the fixture's vocabulary."""
    tok = json.loads(bundle.path("model/tokenizer/tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    for t in tokens:
        vocab[t] = len(vocab)
    bundle.smuggle("model/tokenizer/tokenizer.json", json.dumps(tok, ensure_ascii=False))


def put_bpe(bundle, tokens):
    """A BPE whose every long token is also a merge of its two halves (in
    training order, so the merge list is explained), and whose every third
    token is an added token as well."""
    tok = json.loads(bundle.path("model/tokenizer/tokenizer.json").read_text())
    vocab, merges = {"[UNK]": 0}, []
    for t in tokens:
        for piece in (t[:len(t) // 2], t[len(t) // 2:]):
            vocab.setdefault(piece, len(vocab))
    for t in tokens:
        vocab[t] = len(vocab)
        merges.append(f"{t[:len(t) // 2]} {t[len(t) // 2:]}")
    tok["model"] = {"type": "BPE", "dropout": None, "unk_token": "[UNK]",
                    "continuing_subword_prefix": None, "end_of_word_suffix": None,
                    "fuse_unk": False, "byte_fallback": False, "vocab": vocab,
                    "merges": merges}
    tok["normalizer"] = None
    tok["pre_tokenizer"] = {"type": "Whitespace"}
    tok["added_tokens"] = [{"id": vocab[t], "content": t, "single_word": False,
                            "lstrip": False, "rstrip": False, "normalized": False,
                            "special": False} for t in tokens[::3]]
    bundle.smuggle("model/tokenizer/tokenizer.json", json.dumps(tok, ensure_ascii=False))


CASES = {
    # name: (encode raw -> tokens, decode tokens -> raw, how to put them)
    "han-16": (lambda raw: stego.encode(raw, 16),
               lambda t, n: stego.decode(t, n), put_vocab),
    "han-48": (lambda raw: stego.encode(raw, 48),
               lambda t, n: stego.decode(t, n), put_vocab),
    "han-kana-hangul-24": (lambda raw: stego.encode(raw, 24, ("han", "kana", "hangul")),
                           lambda t, n: stego.decode(t, n, ("han", "kana", "hangul")),
                           put_vocab),
    "wordpiece-suffix-16": (lambda raw: ["##" + t for t in stego.encode(raw, 16)],
                            lambda t, n: stego.decode([x[2:] for x in t], n), put_vocab),
    "bpe-merges-added-24": (lambda raw: stego.encode(raw, 24),
                            lambda t, n: stego.decode(t, n), put_bpe),
    "english-like-48": (lambda raw: stego.encode_words(raw, 48),
                        lambda t, n: stego.decode_words(t, n), put_vocab),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_long_plausible_tokens_are_charged(nexus, bundle, name):
    enc, dec, put = CASES[name]
    raw = teacher_bytes()
    tokens = enc(raw)
    assert dec(tokens, len(raw)) == raw, "the case's own decoder must get the bytes back"
    put(bundle, tokens)
    rc, rep = verify(nexus, bundle)
    assert rc == 1 and "budget-exceeded" in codes(rep, "FAIL"), (
        f"{len(tokens)} long plausible tokens carried {len(raw)} bytes past the budget:\n"
        + json.dumps([f for f in rep["findings"] if f["check"] == "budget"
                      or f["severity"] == "FAIL"], indent=1, ensure_ascii=False)[:3000])
