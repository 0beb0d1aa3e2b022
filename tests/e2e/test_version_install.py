"""--version/-V on both programs and what `make install` puts in place
(issue 21, item 8): the version, commit, ONNX Runtime version and build
date; the docs messages point at and the JSON Schemas."""
import os
import re

from conftest import BUILD, ROOT, run

DATE = r"built \d{4}-\d{2}-\d{2}"
COMMIT = r"commit (?:[0-9a-f]{12}|unknown)"


def test_nexus_version(nexus):
    long_, short = run(nexus, "--version"), run(nexus, "-V")
    assert long_.returncode == 0 and long_.stdout == short.stdout
    assert re.fullmatch(rf"nexus \S+ \({COMMIT}, onnx runtime 1\.30\.\d+ packaged, {DATE}\)\n",
                        long_.stdout), long_.stdout


def test_nexus_cli_version(nexus_cli):
    long_, short = run(nexus_cli, "--version"), run(nexus_cli, "-V")
    assert long_.returncode == 0 and long_.stdout == short.stdout
    assert re.fullmatch(rf"nexus_cli \S+ \({COMMIT}, onnx runtime 1\.30\.\d+, {DATE}\)\n",
                        long_.stdout), long_.stdout


def test_install_puts_the_referenced_docs_in_place(tmp_path):
    r = run("make", "-C", ROOT, "--no-print-directory", "-s", "install", f"BUILD={BUILD}",
            f"DESTDIR={tmp_path}", "PREFIX=/usr", timeout=600)
    assert r.returncode == 0, r.stderr
    doc = tmp_path / "usr/share/doc/nexus"
    for name in ("TRV.md", "FORMAT.md", "README.md", "schema/nexus.verify.v1.json",
                 "schema/manifest.json"):
        assert (doc / name).is_file(), name
    # every docs/X.md a man page or a --help names is installed
    named = set()
    for page in (ROOT / "docs/man").glob("*.[15]"):
        named.update(re.findall(r"docs/([A-Z-]+\.md)", page.read_text()))
    assert named and all((doc / n).is_file() for n in named), sorted(named)
    assert (tmp_path / "usr/share/man/man1/nexus-pack.1").is_file()
    assert os.access(tmp_path / "usr/bin/nexus", os.X_OK)
    # the runtime's licence texts go with it, as bundles copy them from there
    notices = tmp_path / "usr/libexec/nexus/THIRD_PARTY_NOTICES"
    assert notices.read_bytes() == (BUILD / "libexec/nexus/THIRD_PARTY_NOTICES").read_bytes()
