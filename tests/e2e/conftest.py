"""Shared fixtures for the end-to-end suite: paths to the real binaries."""
import os
import pathlib
import shutil
import stat
import subprocess

import pytest

import schema_check
import bundle_fixture as bf

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("NEXUS_BUILD", ROOT / "build"))
# The trusted runtime `nexus` packages: $NEXUS_RUNTIME_DIR, else the one next
# to the binary.  `make e2e-asan` points it at the plain build's runtime,
# because a sanitized nexus_cli cannot start inside the sandbox's RLIMIT_AS.
RUNTIME_DIR = pathlib.Path(os.environ.get("NEXUS_RUNTIME_DIR", BUILD / "libexec" / "nexus"))


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item (for the fixture below)."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _writable(func, path, _exc):
    """rmtree's onerror: bundles are read-only trees (0555/0444)."""
    os.chmod(os.path.dirname(path), stat.S_IRWXU)
    if os.path.lexists(path) and not os.path.islink(path):
        os.chmod(path, stat.S_IRWXU)
    func(path)


@pytest.fixture(autouse=True)
def _drop_tmp_path_of_passed_tests(request):
    """A passed test's tmp_path is deleted at once: the suite builds about a
    thousand bundles (each carrying ONNX Runtime), more than a tmpfs /tmp
    holds if pytest keeps them all until the end (pytest 7.2, Debian 12's,
    has no tmp_path_retention_policy).  A failed test's stays for reading."""
    # taken before the test: tmp_path is torn down before this fixture is
    path = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    rep = getattr(request.node, "rep_call", None)
    if path is not None and rep is not None and rep.passed:
        shutil.rmtree(path, onerror=_writable)


@pytest.fixture(scope="session")
def nexus():
    path = BUILD / "bin" / "nexus"
    assert path.is_file(), f"{path} missing: run make first"
    return str(path)


@pytest.fixture(scope="session")
def nexus_cli():
    return str(BUILD / "libexec" / "nexus" / "bin" / "nexus_cli")


def run(*args, **kw):
    """Run a command, capture text output, never raise on exit status.
    A --json run of nexus must print one document valid under its schema
    (docs/schema/, schema_check.py)."""
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 300)
    r = subprocess.run([str(a) for a in args], **kw)
    if kw.get("capture_output") and kw.get("text") and isinstance(r.stdout, str):
        schema_check.check(args, r.stdout)
    return r


def sandbox_usable(backend):
    """True when the named sandbox backend can run here (what `nexus` would
    find by itself, checked cheaply from Python)."""
    if backend == "bwrap":
        return os.path.exists("/usr/bin/bwrap") and subprocess.run(
            ["/usr/bin/bwrap", "--unshare-all", "--ro-bind", "/", "/", "/usr/bin/true"],
            capture_output=True).returncode == 0
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.syscall(444, None, 0, 1) >= 1   # landlock_create_ruleset(VERSION)


@pytest.fixture(params=["bwrap", "landlock"])
def sandbox_backend(request, monkeypatch):
    """Run the test once per sandbox backend, forced through NEXUS_SANDBOX."""
    if not sandbox_usable(request.param):
        pytest.skip(f"the {request.param} sandbox cannot run here")
    monkeypatch.setenv("NEXUS_SANDBOX", request.param)
    return request.param


# ---- fixtures moved here by scripts/dev/regroup_tests.py ----


@pytest.fixture(scope="module")
def release_key_file(nexus, tmp_path_factory):
    d = tmp_path_factory.mktemp("release")
    r = run(nexus, "keygen", "-o", d / "release")
    assert r.returncode == 0, r.stderr
    return d / "release.key"


@pytest.fixture(scope="session")
def runtime(tmp_path_factory):
    return bf.make_runtime(tmp_path_factory.mktemp("runtime") / "nexus")


@pytest.fixture
def bundle(tmp_path, runtime):
    b = bf.Bundle(tmp_path / "nexus_bundle_v1", runtime)
    yield b
    b.unlock()


@pytest.fixture(scope="module")
def release_key(nexus, tmp_path_factory):
    prefix = tmp_path_factory.mktemp("release") / "release"
    r = run(nexus, "keygen", "-o", prefix)
    assert r.returncode == 0, r.stderr
    return pathlib.Path(str(prefix) + ".key"), pathlib.Path(str(prefix) + ".pub")
