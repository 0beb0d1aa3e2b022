#!/usr/bin/python3
"""Generate src/lib/scan/budget_cjk.zst: the character model the leak budget
judges CJK (Han, kana) and Hangul vocabulary tokens with (src/lib/scan/budget.c),
as scripts/budget_bigram_gen.py makes the English letter-bigram model.

Corpus: the word lists of four Debian 12 packages (no running text of
these scripts ships with Debian outside message catalogues, and those are
what bench/tok_budget_real.py trains its real CJK vocabulary on, so they
stay out of the model):

    rime-essay 0.0~git20230204.e0519d0-1       Chinese words (traditional)
      sha256 a88723154a076dd746de3e7c48738179cde9cf1b3480f12b6781c4e1afa9b015
    rime-data-pinyin-simp 0.0~git20230104.52b9c75-1   Chinese words (simplified)
      sha256 9ff3f2ab35abb154cf9f37127c9e7edee243c1de99ebccba16a9f69a1f7fd2b1
    mecab-ipadic 2.7.0-20070801+main-3         Japanese words (EUC-JP CSV)
      sha256 2a59bb65193b605cec3e5540e69e7d3ce8db4624744f8686f419aa0cf3f327f2
    hunspell-ko 0.7.92-1                       Korean words (NFD jamo -> NFC)
      sha256 d02674324f1b320f069d93336578f01df4ab6cff23d0878867ccdc80eb6307f2

Run (the packages installed, or unpacked with `dpkg-deb -x` under --root):
    scripts/budget_cjk_gen.py [--root DIR] src/lib/scan/budget_cjk.zst

Model, over the distinct words (each counted once): the cost of the first
character is its unigram cost -log2 P(c) (add-1/2 smoothing); the cost of
character b after a is -log2(0.7 P(b|a) + 0.3 P(b)).  A pair never seen
costs the unigram cost of b plus log2(1/0.3) bits; pairs whose cost is
within 1 bit of that back-off are left out, since the back-off says the
same.  Costs are in eighths of a bit, capped at 255; a pair's cost is
rounded to whole bits (the file is a third smaller, and half a bit a pair
moves no real token across the limit).

File (little-endian, then zstd -22): "NXCJK1\\0\\0", u32 chars, u32 pairs,
u8 unknown-character cost, u8 back-off, u16 0; chars x u32 code point
(sorted); chars x u8 unigram cost; pairs x the key (a index << 16 | b index,
sorted) less the key before, as a LEB128 varint; pairs x u8 pair cost.
"""
import argparse
import collections
import glob
import math
import re
import struct
import subprocess
import sys
import unicodedata

LAMBDA = 0.7
RUN = re.compile("[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\uac00-\ud7af\U00020000-\U0003ffff]+")


def words(root):
    out = set()

    def add(w):
        out.update(RUN.findall(unicodedata.normalize("NFC", w)))

    rime = root + "/usr/share/rime-data/"
    with open(rime + "essay.txt", encoding="utf-8") as f:
        for line in f:
            add(line.split("\t")[0])
    with open(rime + "pinyin_simp.dict.yaml", encoding="utf-8") as f:
        for line in f:
            if "\t" in line:
                add(line.split("\t")[0])
    for p in sorted(glob.glob(root + "/usr/share/mecab/dic/ipadic/*.csv")):
        with open(p, encoding="euc-jp", errors="ignore") as f:
            for line in f:
                add(line.split(",")[0])
    with open(root + "/usr/share/hunspell/ko.dic", encoding="utf-8") as f:
        for line in f:
            add(line.strip().split("/")[0])
    return out


def eighths(bits):
    return min(255, round(bits * 8))


def leb128(x):
    out = bytearray()
    while x >= 0x80:
        out.append(x & 0x7F | 0x80)
        x >>= 7
    out.append(x)
    return bytes(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default="")
    ap.add_argument("out")
    a = ap.parse_args()
    ws = words(a.root)
    ch, bg, follow = collections.Counter(), collections.Counter(), collections.Counter()
    for w in ws:
        ch.update(w)
        for x, y in zip(w, w[1:]):
            bg[x + y] += 1
            follow[x] += 1
    n, v = sum(ch.values()), len(ch)
    chars = sorted(ch, key=ord)
    if len(chars) > 65535:
        sys.exit("too many characters for 16-bit indices")
    index = {c: i for i, c in enumerate(chars)}
    p_uni = {c: (ch[c] + 0.5) / (n + 0.5 * v) for c in chars}
    uni = [eighths(-math.log2(p_uni[c])) for c in chars]
    unknown = eighths(-math.log2(0.5 / (n + 0.5 * v)))
    backoff = eighths(-math.log2(1 - LAMBDA))
    pairs = []
    for xy, k in bg.items():
        x, y = xy
        cost = 8 * round(-math.log2(LAMBDA * k / follow[x] + (1 - LAMBDA) * p_uni[y]))
        cost = min(248, cost)
        if cost < uni[index[y]] + backoff - 8:
            pairs.append((index[x] << 16 | index[y], cost))
    pairs.sort()
    blob = bytearray(b"NXCJK1\0\0")
    blob += struct.pack("<IIBBH", len(chars), len(pairs), unknown, backoff, 0)
    blob += struct.pack(f"<{len(chars)}I", *(ord(c) for c in chars)) + bytes(uni)
    prev = 0
    for k, _ in pairs:
        blob += leb128(k - prev)
        prev = k
    blob += bytes(c for _, c in pairs)
    z = subprocess.run(["zstd", "--ultra", "-22", "-q", "-c", f"--stream-size={len(blob)}"], input=blob, capture_output=True, check=True)
    with open(a.out, "wb") as f:
        f.write(z.stdout)
    print(f"{len(ws)} words, {len(chars)} characters, {len(pairs)} pairs, "
          f"{len(blob)} bytes, {len(z.stdout)} compressed", file=sys.stderr)


if __name__ == "__main__":
    main()
