"""Teacher bytes hidden in long CJK vocabulary tokens that our own CJK
character model (src/lib/scan/budget_cjk.zst, scripts/budget_cjk_gen.py)
calls plausible: each character is chosen among the likely successors of
the one before it, so a token costs at most 9 bits a character under the
model - within the leak budget's free allowance of 4 + 10 bits a character
as it stood before issue 22's CJK fix.  Decodable: the decoder walks the
same model.  Used by test_cjk_budget.py.
"""
import collections
import functools
import pathlib
import struct
import subprocess
import unicodedata

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODEL = ROOT / "src/lib/scan/budget_cjk.zst"
PAIR_MAX = 9 * 8        # eighths of a bit: a successor at most this likely
FIRST_MAX = 14 * 8      # a token's first character, its unigram cost
BITS_MAX = 6            # bits one character carries (64 candidates)
HUB_MIN = 4             # candidates a character must offer to be walked through

SCRIPTS = {
    "han": lambda cp: 0x3400 <= cp < 0xA000,
    "kana": lambda cp: 0x3040 <= cp < 0x3100,
    "hangul": lambda cp: 0xAC00 <= cp < 0xD7B0,
}


@functools.lru_cache(None)
def model():
    """The table as budget.c reads it: code points, unigram costs, and the
    cost of each listed pair, in eighths of a bit."""
    raw = subprocess.run(["zstd", "-d", "-c", str(MODEL)], capture_output=True,
                         check=True).stdout
    assert raw[:8] == b"NXCJK1\0\0"
    nchars, npairs = struct.unpack_from("<II", raw, 8)
    at = 20
    cps = struct.unpack_from(f"<{nchars}I", raw, at)
    at += 4 * nchars
    uni = {cp: raw[at + i] for i, cp in enumerate(cps)}
    at += nchars
    keys, key = [], 0
    for _ in range(npairs):
        delta = shift = 0
        while True:
            b = raw[at]
            at += 1
            delta |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        key += delta
        keys.append(key)
    succ = collections.defaultdict(list)
    for k, cost in zip(keys, raw[at:at + npairs]):
        succ[cps[k >> 16]].append((cost, cps[k & 0xFFFF]))
    return uni, succ


@functools.lru_cache(None)
def walk(script):
    """(first-character candidates, successor candidates per character) of
    one script: letters only, and only characters that offer HUB_MIN cheap
    successors themselves, so a walk never gets stuck."""
    uni, succ = model()
    inside = SCRIPTS[script]
    hub = {cp for cp in uni if inside(cp) and unicodedata.category(chr(cp)).startswith("L")}
    while True:
        cand = {a: sorted((c, b) for c, b in succ.get(a, ()) if c <= PAIR_MAX and b in hub)
                for a in hub}
        keep = {a for a in hub if len(cand[a]) >= HUB_MIN}
        if keep == hub:
            break
        hub = keep
    first = sorted((uni[cp], cp) for cp in hub if uni[cp] <= FIRST_MAX)
    return [cp for _, cp in first], {a: [b for _, b in v] for a, v in cand.items()}


def width(n):
    return min(BITS_MAX, n.bit_length() - 1)


def encode(raw, length, scripts=("han",)):
    """raw's bits as tokens of `length` characters, the script of token t
    scripts[t % len(scripts)]."""
    bits, total, at = int.from_bytes(raw, "little"), len(raw) * 8, 0
    out = []
    while at < total:
        first, cand = walk(scripts[len(out) % len(scripts)])
        opts, tok = first, []
        for _ in range(length):
            w = width(len(opts))
            cp = opts[(bits >> at) & ((1 << w) - 1)]
            at += w
            tok.append(chr(cp))
            opts = cand[cp]
        out.append("".join(tok))
    assert len(set(out)) == len(out), "two tokens alike: pick another payload"
    return out


def decode(tokens, nbytes, scripts=("han",)):
    bits = at = 0
    for t, tok in enumerate(tokens):
        first, cand = walk(scripts[t % len(scripts)])
        opts = first
        for c in tok:
            w = width(len(opts))
            bits |= opts.index(ord(c)) << at
            at += w
            opts = cand[ord(c)]
    return (bits & ((1 << (nbytes * 8)) - 1)).to_bytes(nbytes, "little")


@functools.lru_cache(None)
def pair_table():
    return {(a, b): c for a, v in model()[1].items() for c, b in v}


def cost_bits(tok):
    """The token's cost under the model, as budget.c's cjk_plausible adds it."""
    uni, table = model()[0], pair_table()
    cps = [ord(c) for c in tok]
    s = uni[cps[0]]
    for a, b in zip(cps, cps[1:]):
        s += table[(a, b)]
    return s / 8


# English-like words --------------------------------------------------------

BIGRAM = ROOT / "src/lib/scan/budget_bigram.h"
LETTER_MAX = 4 * 8      # eighths of a bit: a next letter at most this likely
VOWELS = set("aeiouy")


@functools.lru_cache(None)
def bigram():
    """nx_budget__bigram[a][b] (0 a word start, 1..26 a..z, 27 a word end)."""
    rows = [[int(x) for x in line.strip().strip("{},").split(",")]
            for line in BIGRAM.read_text().splitlines() if line.strip().startswith("{")]
    assert len(rows) == 28 and all(len(r) == 28 for r in rows)
    return rows


def letter_options(word):
    """The next letters a made-up word may take: the likely ones after its
    last letter, vowels only after 4 consonants (budget.c allows no run of
    5), in a fixed order."""
    table = bigram()
    prev = ord(word[-1]) - 96 if word else 0
    run = len(word) - len(word.rstrip("bcdfghjklmnpqrstvwxz"))
    opts = sorted((table[prev][i], chr(96 + i)) for i in range(1, 27)
                  if table[prev][i] <= LETTER_MAX and (run < 4 or chr(96 + i) in VOWELS))
    return [c for _, c in opts]


def encode_words(raw, length):
    """raw's bits as made-up lower-case words of `length` letters, each
    letter among the likeliest after the one before (budget.c's English
    rule: an average bigram cost of at most 4.5 bits)."""
    bits, total, at = int.from_bytes(raw, "little"), len(raw) * 8, 0
    out = []
    while at < total:
        w = ""
        while len(w) < length:
            opts = letter_options(w)
            k = width(len(opts)) if len(opts) > 1 else 0
            w += opts[(bits >> at) & ((1 << k) - 1)]
            at += k
        out.append(w)
    assert len(set(out)) == len(out), "two words alike: pick another payload"
    return out


def decode_words(words, nbytes):
    bits = at = 0
    for w in words:
        for i, c in enumerate(w):
            opts = letter_options(w[:i])
            k = width(len(opts)) if len(opts) > 1 else 0
            bits |= opts.index(c) << at
            at += k
    return (bits & ((1 << (nbytes * 8)) - 1)).to_bytes(nbytes, "little")
