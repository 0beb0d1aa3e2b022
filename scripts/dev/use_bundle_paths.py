#!/usr/bin/python3
"""Rewrite bundle-layout string literals in src/**/*.c to the names of
include/nexus/bundle.h, adding the include where it is missing.

    use_bundle_paths.py [--check]

Only whole literals are rewritten ("bin/nexus_cli", not "bin/nexus_cli
failed"); "model/tokenizer/" becomes NX_BUNDLE_TOKENIZER_DIR "/".  Run it
after a merge brings new code; --check lists what it would change and
exits 1 if anything (make lint runs it so)."""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
HDR = ROOT / "include/nexus/bundle.h"


def names():
    out = {}
    for m in re.finditer(r'#define (NX_\w+) ("[^"]*")', HDR.read_text()):
        out[m.group(2)] = m.group(1)
    out['"model/tokenizer/"'] = 'NX_BUNDLE_TOKENIZER_DIR "/"'
    # directory names alone are too common a word to rewrite blindly
    for d in ('"lib"', '"model"', '"config"', '"src"'):
        out.pop(d, None)
    return out


LIT = re.compile(r'"(?:\\.|[^"\\\n])*"')
COMMENT = re.compile(r'/\*.*?\*/|//[^\n]*', re.S)


def rewrite(text, table):
    spans = [(m.start(), m.end()) for m in COMMENT.finditer(text)]

    def in_comment(pos):
        return any(a <= pos < b for a, b in spans)

    out, last, n = [], 0, 0
    for m in LIT.finditer(text):
        if m.group(0) in table and not in_comment(m.start()):
            # not part of an #include or #define line
            line_start = text.rfind("\n", 0, m.start()) + 1
            if text[line_start:m.start()].lstrip().startswith("#"):
                continue
            out.append(text[last:m.start()])
            out.append(table[m.group(0)])
            last = m.end()
            n += 1
    out.append(text[last:])
    return "".join(out), n


def add_include(text):
    if '#include "nexus/bundle.h"' in text:
        return text
    m = re.search(r'^#include "[^"]+"\n', text, re.M)
    if not m:
        m = re.search(r'^#include <[^>]+>\n', text, re.M)
    return text[:m.end()] + '#include "nexus/bundle.h"\n' + text[m.end():]


def main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="list what would change and exit 1 if anything; write nothing")
    check = ap.parse_args().check
    table = names()
    changed = []
    for p in sorted((ROOT / "src").rglob("*.c")):
        text = p.read_text()
        new, n = rewrite(text, table)
        if not n:
            continue
        changed.append(f"{p.relative_to(ROOT)}: {n} literal(s)")
        if not check:
            p.write_text(add_include(new))
    for c in changed:
        print(("would rewrite " if check else "rewrote ") + c, file=sys.stderr)
    return 1 if check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
