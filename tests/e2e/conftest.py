"""Shared fixtures for the end-to-end suite: paths to the real binaries."""
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("NEXUS_BUILD", ROOT / "build"))
# The trusted runtime `nexus` packages: $NEXUS_RUNTIME_DIR, else the one next
# to the binary.  `make e2e-asan` points it at the plain build's runtime,
# because a sanitized nexus_cli cannot start inside the sandbox's RLIMIT_AS.
RUNTIME_DIR = pathlib.Path(os.environ.get("NEXUS_RUNTIME_DIR", BUILD / "libexec" / "nexus"))


@pytest.fixture(scope="session")
def nexus():
    path = BUILD / "bin" / "nexus"
    assert path.is_file(), f"{path} missing: run make first"
    return str(path)


@pytest.fixture(scope="session")
def nexus_cli():
    return str(BUILD / "libexec" / "nexus" / "bin" / "nexus_cli")


def run(*args, **kw):
    """Run a command, capture text output, never raise on exit status."""
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 300)
    return subprocess.run([str(a) for a in args], **kw)
