"""Pure-Python helpers for serving: WordPiece tokenizer, config reader, softmax.

The tokenizer follows the tokenizer.json it is given (BertNormalizer with
lowercasing and accent stripping, BertPreTokenizer, greedy longest-match
WordPiece, [CLS] ... [SEP]), so the ids equal those used when the model was
fitted and those bin/nexus_cli computes.
"""
import json
import os
import re
import unicodedata

import numpy as np

_WS = set("\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000")
_WS.update(chr(c) for c in range(0x2000, 0x200B))
_CJK = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
        (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def _punct(c):
    cp = ord(c)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(c).startswith("P")


def _normalize(text):
    out = []
    for c in text:
        cat = unicodedata.category(c)
        if c in "\0\ufffd" or (c not in "\t\n\r" and cat.startswith("C")):
            continue
        if c in " \t\n\r" or cat == "Zs":
            out.append(" ")
        elif any(lo <= ord(c) <= hi for lo, hi in _CJK):
            out.append(" " + c + " ")
        else:
            out.append(c)
    text = unicodedata.normalize("NFD", "".join(out))
    return "".join(c.lower() for c in text if unicodedata.category(c) != "Mn")


def _split(text):
    words, cur = [], ""
    for c in text:
        if c in _WS or _punct(c):
            if cur:
                words.append(cur)
            cur = ""
            if c not in _WS:
                words.append(c)
        else:
            cur += c
    return words + [cur] if cur else words


class Tokenizer:
    def __init__(self, directory):
        with open(os.path.join(directory, "tokenizer.json"), encoding="utf-8") as f:
            doc = json.load(f)
        model = doc["model"]
        self.vocab = model["vocab"]
        self.unk = self.vocab[model["unk_token"]]
        self.prefix = model["continuing_subword_prefix"]
        self.max_chars = model["max_input_chars_per_word"]
        self.cls, self.sep = self.vocab["[CLS]"], self.vocab["[SEP]"]
        specials = [t["content"] for t in doc.get("added_tokens", [])]
        self._special_re = re.compile("(" + "|".join(map(re.escape, specials)) + ")") if specials else None

    def _word(self, word):
        if len(word) > self.max_chars:
            return [self.unk]
        ids, start = [], 0
        while start < len(word):
            for end in range(len(word), start, -1):
                piece = word[start:end] if start == 0 else self.prefix + word[start:end]
                if piece in self.vocab:
                    ids.append(self.vocab[piece])
                    start = end
                    break
            else:
                return [self.unk]
        return ids

    def encode(self, text, max_len):
        ids = []
        parts = self._special_re.split(text) if self._special_re else [text]
        for part in parts:
            if part in self.vocab and self._special_re and self._special_re.fullmatch(part):
                ids.append(self.vocab[part])
            elif part:
                for w in _split(_normalize(part)):
                    ids.extend(self._word(w))
        return [self.cls] + ids[: max_len - 2] + [self.sep]


def read_runtime_config(path):
    """The flat `key: value` / `key: [a, b]` subset of YAML that runtime.yaml uses."""
    conf = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            key, _, value = line.partition(":")
            value = value.strip()
            if value.startswith("[") and value.endswith("]"):
                conf[key.strip()] = [v.strip() for v in value[1:-1].split(",") if v.strip()]
            else:
                conf[key.strip()] = int(value) if value.isdigit() else value
    return conf


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def pad_batch(batch):
    n = max(len(ids) for ids in batch)
    ids = np.zeros((len(batch), n), dtype=np.int64)
    mask = np.zeros((len(batch), n), dtype=np.int64)
    for i, row in enumerate(batch):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return ids, mask
