#!/usr/bin/python3
"""make lint: the finding codes of include/nexus/findings.def, docs/TRV.md
and the man pages agree.

    check_findings.py

1. Every row of findings.def has a row in docs/TRV.md's "Finding codes",
   under the section of its check ("### integrity", "### code (TRV-2)"; ""
   is "### any check") and with its severity first in the `sev` column; and
   every code of those tables is a row of findings.def.  A code added
   without its documentation fails here.
2. Every code of findings.def is reported somewhere in src/ (NX_F_<NAME>):
   a code nothing reports is documentation of nothing.
3. A man page (docs/man/) that names a finding in bold names a code of the
   table: bold kebab-case words are codes, commands (nexus-*) or listed in
   NOT_CODES below.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
ROW = re.compile(r'^NX_FINDING\((\w+), "([a-z0-9-]+)", "([a-z]*)", (INFO|WARN|FAIL),', re.M)
DOC_ROW = re.compile(r'^\| `([a-z0-9-]+)` \| ([^|]*) \|')
# bold kebab-case words of the man pages that are not finding codes
NOT_CODES = {"fix-modes", "re-hash", "openssl-pkeyutl", "top-k", "top-p",
             # nexus_cli's own error codes (nexus_cli(1), --json errors)
             "bad-request", "dead-empty", "empty-prompt", "model-error", "prompt-too-long"}


def table():
    rows = {}
    for m in ROW.finditer((ROOT / "include/nexus/findings.def").read_text()):
        rows[m.group(2)] = (m.group(1), m.group(3), m.group(4))
    return rows


def documented():
    out, section, inside = {}, None, False
    for n, line in enumerate((ROOT / "docs/TRV.md").read_text().splitlines(), 1):
        if line.startswith("## "):
            inside = line.strip() == "## Finding codes"
            continue
        if not inside:
            continue
        if line.startswith("### "):
            section = line[4:].split(" (")[0].strip()
            continue
        m = DOC_ROW.match(line)
        if m:
            out[m.group(1)] = (section, m.group(2).split()[0] if m.group(2).split() else "", n)
    return out


def man_words():
    bold_req = re.compile(r'^\.(B|BR|RB|BI|IB)\s+(.*)$')
    for p in sorted((ROOT / "docs/man").iterdir()):
        for n, line in enumerate(p.read_text().splitlines(), 1):
            words = []
            m = bold_req.match(line)
            if m:
                parts = re.findall(r'"[^"]*"|\S+', m.group(2))
                first_bold = m.group(1) in ("B", "BR", "BI")
                for i, w in enumerate(parts):
                    if m.group(1) == "B" or (i % 2 == 0) == first_bold:
                        words.append(w.strip('"'))
            words += re.findall(r'\\fB(.*?)\\f[RPI]', line)
            for w in words:
                w = w.replace("\\-", "-").rstrip(".,;:)")
                if re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)+", w):
                    yield p.relative_to(ROOT), n, w


def main():
    rows, docs, bad = table(), documented(), []
    src = "\n".join(p.read_text() for p in sorted((ROOT / "src").rglob("*.[ch]")))
    for code, (name, check, sev) in sorted(rows.items()):
        want = check or "any check"
        if code not in docs:
            bad.append(f"include/nexus/findings.def: {code} has no row in docs/TRV.md's "
                       f"'Finding codes' (add one under '### {want}')")
            continue
        section, dsev, line = docs[code]
        if section != want:
            bad.append(f"docs/TRV.md:{line}: {code} is listed under '{section}', "
                       f"findings.def says check '{want}'")
        if dsev != sev:
            bad.append(f"docs/TRV.md:{line}: {code} has severity {dsev or '?'}, "
                       f"findings.def says {sev}")
        if not re.search(rf"\bNX_F_{name}\b", src):
            bad.append(f"include/nexus/findings.def: {code} (NX_F_{name}) is reported "
                       f"nowhere in src/; remove it here and in docs/TRV.md")
    for code, (_, _, line) in sorted(docs.items()):
        if code not in rows:
            bad.append(f"docs/TRV.md:{line}: {code} is not a row of include/nexus/findings.def")
    for path, line, w in man_words():
        if w not in rows and w not in NOT_CODES and not w.startswith("nexus-"):
            bad.append(f"{path}:{line}: '{w}' is not a finding code of "
                       f"include/nexus/findings.def (another kind of word: add it to NOT_CODES in scripts/dev/check_findings.py)")
    for b in bad:
        print(b, file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
