#!/usr/bin/python3
"""Rename C identifiers from a list, in every .c/.h file under the given
folders (default: src tests bench).

    rename_symbols.py [--list scripts/dev/symbol-renames.txt] [--check] [DIR...]

The list holds one `OLD NEW` per line (# starts a comment).  An identifier is
renamed wherever it occurs as a whole word, except as part of a file name
(`build_export.c`, `lib/export/...`): comments keep naming files.  The edit
is idempotent, so the lead re-runs it on a tree that merged a branch still
using old names.  --check edits nothing and exits 1 when an old name is
left.
"""
import argparse
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def load(path):
    pairs = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].split()
        if not line:
            continue
        if len(line) != 2 or not all(re.fullmatch(r"[A-Za-z_]\w*", w) for w in line):
            sys.exit(f"{path}:{n}: want `OLD NEW`, two C identifiers")
        pairs[line[0]] = line[1]
    return pairs


def shown(p):
    return p.relative_to(ROOT) if p.is_relative_to(ROOT) else p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--list", type=pathlib.Path,
                    default=ROOT / "scripts" / "dev" / "symbol-renames.txt")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("dirs", nargs="*", default=["src", "tests", "bench"])
    a = ap.parse_args()
    pairs = load(a.list)
    # A word not preceded by '/' nor followed by a file suffix: an identifier,
    # not a file name in a comment.
    word = re.compile(r"(?<![\w/])(" + "|".join(map(re.escape, sorted(pairs, key=len, reverse=True)))
                      + r")(?![\w]|\.[ch]\b|\.o\b)")
    files = [p for d in a.dirs for p in sorted((ROOT / d).rglob("*"))
             if p.suffix in (".c", ".h") and p.is_file()]
    left = 0
    for p in files:
        text = p.read_text()
        out, n = word.subn(lambda m: pairs[m.group(1)], text)
        if not n:
            continue
        if a.check:
            for m in word.finditer(text):
                line = text.count("\n", 0, m.start()) + 1
                print(f"{shown(p)}:{line}: {m.group(1)} -> {pairs[m.group(1)]}")
            left += n
            continue
        p.write_text(out)
        print(f"{shown(p)}: {n} renamed")
    if a.check and left:
        print(f"{left} old name(s) left; run scripts/dev/rename_symbols.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
