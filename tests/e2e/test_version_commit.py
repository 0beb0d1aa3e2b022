"""Which commit nexus_cli -V names (issue 21): the last commit that changed
what the runtime is made of, not HEAD, so that a commit elsewhere in the tree
does not change the runtime's bytes and make the bundles built before it
runtime-untrusted (docs/TRV.md, "Development builds")."""
import pathlib
import re
import shutil
import subprocess

from conftest import run

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_runtime_names_the_last_commit_of_its_own_sources(nexus_cli):
    """nexus_cli carries the commit of the last change to what it is made of,
    so a commit elsewhere does not change its bytes (docs/TRV.md)."""
    inputs = ["Makefile", "include", "src/runtime", "src/util", "src/lib/tokenizer",
              "src/lib/format", "src/lib/onnx"]
    commit = "unknown"   # what the Makefile embeds without git or outside a checkout
    if shutil.which("git"):
        r = subprocess.run(["git", "-C", ROOT, "log", "-1", "--format=%h", "--abbrev=12", "HEAD",
                            "--", *inputs], capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.strip():
            commit = r.stdout.strip()
    out = run(nexus_cli, "-V").stdout
    assert f"(commit {commit}," in out, out
    # the Makefile's list is the one this test names
    mk = (ROOT / "Makefile").read_text()
    assert re.search(r"^RT_INPUTS\s*:=\s*Makefile include src/runtime \$\(addprefix src/,"
                     r"\$\(PROD_LAYERS\)\)", mk, re.M)
    assert re.search(r"^PROD_LAYERS := util lib/tokenizer lib/format lib/onnx$", mk, re.M)
