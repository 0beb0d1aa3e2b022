"""The user-facing docs cannot drift from the code.

- every finding code the code can report (include/nexus/findings.def) is
  in docs/TRV.md, and every code TRV.md's tables list can still be reported;
- every option a verb's --help lists is in its man page, and every option
  a man page's OPTIONS section documents exists in --help;
- the man pages render without groff warnings.
"""
import pathlib
import re
import shutil

import pytest

from conftest import ROOT, run

DOCS = ROOT / "docs"
MAN = DOCS / "man"

CODE = r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*"
# The codes are the rows of include/nexus/findings.def; the code reports
# NX_F_<NAME>, never the string (make lint: scripts/dev/use_finding_codes.py).
ROW_RE = re.compile(r'^NX_FINDING\((\w+), "(' + CODE + r')",', re.M)


def emitted_codes():
    """Codes of the table that something in src/ reports."""
    src = "\n".join(p.read_text() for p in sorted((ROOT / "src").rglob("*.[ch]")))
    table = (ROOT / "include" / "nexus" / "findings.def").read_text()
    return {code for name, code in ROW_RE.findall(table) if re.search(rf"\bNX_F_{name}\b", src)}


def documented_codes():
    """Codes in the first column of TRV.md's finding-code tables."""
    text = (DOCS / "TRV.md").read_text()
    table = text[text.index("## Finding codes"):text.index("## Known limits")]
    return set(re.findall(r"^\| `(" + CODE + r")` \|", table, re.M))


def test_code_extraction_finds_known_codes():
    # Guards the regexes: if they silently matched nothing the checks below
    # would pass vacuously.
    codes = emitted_codes()
    for c in ("symlink", "runtime-mismatch", "term-in-docs", "unsigned", "bad-signature",
              "functional-timeout", "functional-import", "selftest-malformed", "hash-mismatch"):
        assert c in codes
    assert len(codes) > 60


def test_every_emitted_code_is_documented():
    missing = sorted(emitted_codes() - documented_codes())
    assert not missing, f"finding codes missing from docs/TRV.md: {missing}"


def test_no_documented_code_is_stale():
    stale = sorted(documented_codes() - emitted_codes())
    assert not stale, f"docs/TRV.md lists codes the code no longer emits: {stale}"


NEXUS_VERBS = ["build", "verify", "inspect", "run", "keygen", "sign", "manifest", "push", "pull",
               "init", "pack", "unpack", "fix-modes", "rm", "diff", "serve"]
CLI_VERBS = ["info", "run", "selftest", "tokenize", "detokenize", "chat", "generate", "serve"]
OPT_RE = re.compile(r"^\s+(?:(-[A-Za-z]), )?(--[a-z][a-z0-9-]*)", re.M)


def help_options(binary, verb):
    r = run(binary, verb, "--help")
    assert r.returncode == 0, r.stderr
    opts = set()
    for short, long_ in OPT_RE.findall(r.stdout):
        opts.add(long_)
        if short:
            opts.add(short)
    assert "--help" in opts
    return opts


def man_text(page):
    return (MAN / page).read_text().replace("\\-", "-")


def man_options(page, verb=None):
    """Options documented in the OPTIONS section (or the verb's part of it)."""
    text = man_text(page)
    m = re.search(r"^\.SH OPTIONS\n(.*?)(?=^\.SH )", text, re.M | re.S)
    assert m, f"{page} has no OPTIONS section"
    return set(re.findall(r"^\.B[IR]?\s+\"?(--?[A-Za-z][a-z0-9-]*)", m.group(1), re.M))


@pytest.mark.parametrize("verb", NEXUS_VERBS)
def test_nexus_help_options_in_man_page(nexus, verb):
    page = f"nexus-{verb}.1"
    text = man_text(page)
    for opt in help_options(nexus, verb) - {"--help", "-h"}:
        assert re.search(re.escape(opt) + r"(?![a-z0-9-])", text), \
            f"{opt} of 'nexus {verb}' is not in docs/man/{page}"
    documented = man_options(page) - {"--help", "-h"}
    assert not documented - help_options(nexus, verb), \
        f"docs/man/{page} documents options 'nexus {verb} --help' does not list"


@pytest.mark.parametrize("verb", CLI_VERBS)
def test_nexus_cli_help_options_in_man_page(nexus_cli, verb):
    text = man_text("nexus_cli.1")
    for opt in help_options(nexus_cli, verb) - {"--help", "-h"}:
        assert re.search(re.escape(opt) + r"(?![a-z0-9-])", text), \
            f"{opt} of 'nexus_cli {verb}' is not in docs/man/nexus_cli.1"


def test_every_nexus_verb_has_a_man_page(nexus):
    r = run(nexus, "--help")
    verbs = re.findall(r"^  ([a-z][a-z-]*) {2,}", r.stdout, re.M)
    assert sorted(verbs) == sorted(NEXUS_VERBS)
    overview = man_text("nexus.1")
    for v in verbs:
        assert (MAN / f"nexus-{v}.1").is_file()
        assert f"nexus-{v}" in overview, f"nexus.1 does not refer to nexus-{v}(1)"


@pytest.mark.skipif(not shutil.which("groff"), reason="groff not installed")
@pytest.mark.parametrize("page", sorted(p.name for p in MAN.glob("*.[15]")))
def test_man_page_renders_without_warnings(page):
    r = run("groff", "-man", "-ww", "-z", MAN / page)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
