#!/usr/bin/python3
"""Rewrite finding-code string literals ("hash-mismatch") in the files that
report findings to the enum of include/nexus/findings.def (NX_F_HASH_MISMATCH),
adding #include "nexus/findings.h" where nothing includes it yet.

    use_finding_codes.py [--check] [FILE...]

Without FILE it rewrites the files that report findings: src/lib/verify/,
the functional check (src/lib/sandbox/verify_functional*.c) and the Python
import audit (src/lib/scan/pyaudit*.c).  A literal in a comment or on a
preprocessor line is left alone, and so are the literals of SKIP (the same
word used for something else).  Run it after a merge brings code written
against the string codes; --check lists what it would change and exits 1
if anything (make lint runs it so)."""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
TABLE = ROOT / "include/nexus/findings.def"
FILES = ["src/lib/verify/*.c", "src/lib/sandbox/verify_functional*.c", "src/lib/scan/pyaudit*.c"]
# file -> literals that are not finding codes there
SKIP = {
    "src/lib/scan/pyaudit_lists.c": {'"bytecode"'},   # a reason's category
}
ROW = re.compile(r'^NX_FINDING\((\w+), ("[a-z0-9-]+"),', re.M)
LIT = re.compile(r'"(?:\\.|[^"\\\n])*"')
COMMENT = re.compile(r'/\*.*?\*/|//[^\n]*', re.S)


def codes():
    return {m.group(2): "NX_F_" + m.group(1) for m in ROW.finditer(TABLE.read_text())}


def rewrite(text, table, skip):
    spans = [(m.start(), m.end()) for m in COMMENT.finditer(text)]
    out, last, n = [], 0, 0
    for m in LIT.finditer(text):
        lit = m.group(0)
        if lit not in table or lit in skip or any(a <= m.start() < b for a, b in spans):
            continue
        line_start = text.rfind("\n", 0, m.start()) + 1
        if text[line_start:m.start()].lstrip().startswith("#"):
            continue
        # a literal joined to another ("a" "b") is text, not a code
        before = text[line_start:m.start()].rstrip()
        after = text[m.end():text.find("\n", m.end())].lstrip()
        if before.endswith('"') or after.startswith('"'):
            continue
        out += [text[last:m.start()], table[lit]]
        last = m.end()
        n += 1
    out.append(text[last:])
    return "".join(out), n


INCLUDE = re.compile(r'^#include "([^"]+)"', re.M)


def reaches_findings(text, here, seen=None):
    """Whether text includes nexus/findings.h, directly or through others."""
    seen = set() if seen is None else seen
    for inc in INCLUDE.findall(text):
        if inc == "nexus/findings.h":
            return True
        for base in (here, ROOT / "include", ROOT / "src"):
            h = base / inc
            if h.is_file() and h not in seen:
                seen.add(h)
                if reaches_findings(h.read_text(), h.parent, seen):
                    return True
                break
    return False


def add_include(text, here):
    if reaches_findings(text, here):
        return text
    m = re.search(r'^#include "[^"]+"\n', text, re.M) or re.search(r'^#include <[^>]+>\n', text, re.M)
    at = m.start() if m else 0
    return text[:at] + '#include "nexus/findings.h"\n' + text[at:]


def main(argv):
    check = "--check" in argv
    names = [a for a in argv if a != "--check"]
    paths = [ROOT / n for n in names] if names else sorted(p for g in FILES for p in ROOT.glob(g))
    table, changed = codes(), 0
    for p in paths:
        rel = str(p.relative_to(ROOT))
        text = p.read_text()
        new, n = rewrite(text, table, SKIP.get(rel, set()))
        if not n:
            continue
        changed += n
        if check:
            print(f"{rel}: {n} finding code(s) spelled as strings; run scripts/dev/use_finding_codes.py")
        else:
            p.write_text(add_include(new, p.parent))
            print(f"{rel}: {n}")
    return 1 if check and changed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
