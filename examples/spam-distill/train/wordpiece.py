"""A small WordPiece tokenizer: trainer, encoder and Hugging Face file writer.

The `tokenizers` library is not available on the training host, so this file
re-implements exactly the pieces of it that tokenizer.json declares, in the
same order, so that any conforming implementation (Hugging Face's, or the C
one in nexus_cli) reproduces the ids used in training:

  1. added tokens: exact, case-sensitive matches of "[PAD]" "[UNK]" "[CLS]"
     "[SEP]" "[MASK]" in the raw text become those ids directly;
  2. BertNormalizer(clean_text, handle_chinese_chars, strip_accents=None ->
     follows lowercase=True, lowercase): drop NUL, U+FFFD and control chars,
     map whitespace to ' ', pad CJK ideographs with spaces, NFD and drop
     non-spacing marks (Mn), then lowercase char by char;
  3. BertPreTokenizer: split on whitespace, isolate each punctuation char;
  4. WordPiece: greedy longest-match-first, "##" continuation, a word longer
     than 100 chars or with any unmatched remainder becomes [UNK];
  5. [CLS] ... [SEP] around the pieces; truncation keeps the first
     max_len - 2 pieces (HF's truncation with the template's 2 specials).

The trainer is the one HF's WordPieceTrainer uses: BPE merges over words
split into a first char plus "##"-prefixed continuation chars.
"""
import heapq
import json
import re
import unicodedata
from collections import Counter, defaultdict

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PAD, UNK, CLS, SEP, MASK = range(5)
PREFIX = "##"
MAX_CHARS_PER_WORD = 100
_SPECIAL_RE = re.compile("(" + "|".join(re.escape(t) for t in SPECIALS) + ")")

# Rust's char::is_whitespace (Unicode White_Space), used by BertPreTokenizer.
_RUST_WS = set("\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000")
_RUST_WS.update(chr(c) for c in range(0x2000, 0x200B))


def _is_bert_whitespace(c):  # BertNormalizer's notion (clean_text)
    return c in " \t\n\r" or unicodedata.category(c) == "Zs"


def _is_control(c):
    return c not in "\t\n\r" and unicodedata.category(c).startswith("C")


def _is_chinese(cp):
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF
            or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F
            or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def _is_punct(c):
    cp = ord(c)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(c).startswith("P")


def normalize(text):
    out = []
    for c in text:
        if c == "\0" or c == "\ufffd" or _is_control(c):
            continue
        if _is_bert_whitespace(c):
            out.append(" ")
        elif _is_chinese(ord(c)):
            out.append(" " + c + " ")
        else:
            out.append(c)
    text = unicodedata.normalize("NFD", "".join(out))
    text = "".join(c for c in text if unicodedata.category(c) != "Mn")
    # Per character, like the Rust normalizer (no final-sigma context rule).
    return "".join(c.lower() for c in text)


def pre_tokenize(text):
    words, cur = [], []
    for c in text:
        if c in _RUST_WS:
            if cur:
                words.append("".join(cur))
                cur = []
        elif _is_punct(c):
            if cur:
                words.append("".join(cur))
                cur = []
            words.append(c)
        else:
            cur.append(c)
    if cur:
        words.append("".join(cur))
    return words


def words_of(text):
    """Normalized, pre-tokenized words of ordinary (non-special) text."""
    return pre_tokenize(normalize(text))


class WordPiece:
    def __init__(self, vocab):
        self.vocab = vocab                     # token -> id
        self.tokens = sorted(vocab, key=vocab.get)
        self._cache = {}

    def word_ids(self, word):
        ids = self._cache.get(word)
        if ids is not None:
            return ids
        if len(word) > MAX_CHARS_PER_WORD:
            ids = [UNK]
        else:
            ids, start = [], 0
            while start < len(word):
                end, cur = len(word), None
                while start < end:
                    piece = word[start:end] if start == 0 else PREFIX + word[start:end]
                    if piece in self.vocab:
                        cur = self.vocab[piece]
                        break
                    end -= 1
                if cur is None:
                    ids = [UNK]
                    break
                ids.append(cur)
                start = end
        self._cache[word] = ids
        return ids

    def encode(self, text, max_len=None):
        """[CLS] pieces [SEP], the pieces cut to max_len - 2 when max_len is set."""
        ids = []
        for part in _SPECIAL_RE.split(text):
            if part in SPECIALS:
                ids.append(SPECIALS.index(part))
            elif part:
                for w in words_of(part):
                    ids.extend(self.word_ids(w))
        if max_len is not None:
            ids = ids[: max_len - 2]
        return [CLS] + ids + [SEP]


def train(word_counts, vocab_size, min_frequency=2, min_char_count=5):
    """BPE-style WordPiece training over a {word: count} table -> {token: id}.

    Chars seen fewer than min_char_count times are left out of the alphabet
    (mail is full of one-off symbols); words containing them encode as [UNK].
    """
    char_counts = Counter()
    for w, n in word_counts.items():
        for c in w:
            char_counts[c] += n
    alphabet = {c for c, n in char_counts.items() if n >= min_char_count}
    words, counts = [], []
    for w, n in sorted(word_counts.items()):
        if len(w) > MAX_CHARS_PER_WORD:
            continue
        words.append([w[0]] + [PREFIX + c for c in w[1:]])
        counts.append(n)

    vocab = {t: i for i, t in enumerate(SPECIALS)}
    initial = set()
    for syms in words:
        for s in syms:
            if s[-1] in alphabet:
                initial.add(s)
    for t in sorted(initial):
        vocab.setdefault(t, len(vocab))

    pair_count = Counter()
    where = defaultdict(set)
    for wi, syms in enumerate(words):
        for p in zip(syms, syms[1:]):
            pair_count[p] += counts[wi]
            where[p].add(wi)
    heap = [(-n, p) for p, n in pair_count.items()]
    heapq.heapify(heap)

    while len(vocab) < vocab_size and heap:
        neg, pair = heapq.heappop(heap)
        if pair_count.get(pair, 0) != -neg:   # stale heap entry
            continue
        if -neg < min_frequency:
            break
        a, b = pair
        new = a + b[len(PREFIX):]
        vocab.setdefault(new, len(vocab))
        changed = set()
        for wi in sorted(where.pop(pair, ())):
            syms, n = words[wi], counts[wi]
            for p in zip(syms, syms[1:]):
                pair_count[p] -= n
                changed.add(p)
            merged, i = [], 0
            while i < len(syms):
                if i + 1 < len(syms) and syms[i] == a and syms[i + 1] == b:
                    merged.append(new)
                    i += 2
                else:
                    merged.append(syms[i])
                    i += 1
            words[wi] = merged
            for p in zip(merged, merged[1:]):
                pair_count[p] += n
                where[p].add(wi)
                changed.add(p)
        pair_count.pop(pair, None)
        for p in changed:
            n = pair_count.get(p, 0)
            if n > 0:
                heapq.heappush(heap, (-n, p))
            else:
                pair_count.pop(p, None)
    return vocab


def tokenizer_json(vocab):
    """The tokenizer.json document (Hugging Face `tokenizers` format)."""
    special = lambda t: {"id": vocab[t], "content": t, "single_word": False,
                         "lstrip": False, "rstrip": False, "normalized": False,
                         "special": True}
    tmpl = lambda kind, name, type_id: {kind: {"id": name, "type_id": type_id}}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [special(t) for t in SPECIALS],
        "normalizer": {"type": "BertNormalizer", "clean_text": True,
                       "handle_chinese_chars": True, "strip_accents": None,
                       "lowercase": True},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [tmpl("SpecialToken", "[CLS]", 0), tmpl("Sequence", "A", 0),
                       tmpl("SpecialToken", "[SEP]", 0)],
            "pair": [tmpl("SpecialToken", "[CLS]", 0), tmpl("Sequence", "A", 0),
                     tmpl("SpecialToken", "[SEP]", 0), tmpl("Sequence", "B", 1),
                     tmpl("SpecialToken", "[SEP]", 1)],
            "special_tokens": {
                t: {"id": t, "ids": [vocab[t]], "tokens": [t]} for t in ("[CLS]", "[SEP]")
            },
        },
        "decoder": {"type": "WordPiece", "prefix": PREFIX, "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": "[UNK]",
                  "continuing_subword_prefix": PREFIX,
                  "max_input_chars_per_word": MAX_CHARS_PER_WORD,
                  "vocab": dict(sorted(vocab.items(), key=lambda kv: kv[1]))},
    }


def save(vocab, directory):
    doc = tokenizer_json(vocab)
    with open(f"{directory}/tokenizer.json", "w", encoding="utf-8", newline="\n") as f:
        json.dump(doc, f, ensure_ascii=False, indent=2)
        f.write("\n")
    with open(f"{directory}/vocab.txt", "w", encoding="utf-8", newline="\n") as f:
        for t in sorted(vocab, key=vocab.get):
            f.write(t + "\n")
