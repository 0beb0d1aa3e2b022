"""`nexus build` and `nexus verify` when a pthread call fails (issue #22
leftovers): the Nth pthread_mutex_init, pthread_cond_init or
pthread_create the program makes fails (tests/e2e/pthread_shim.py, for
N = 1, 2, ... until none is left).  Each failure is either worked around
(a hashing or verify thread that could not start: the work runs on the
calling thread, and the result is the same) or an error that says what
could not be made and why, never "Success", and never a bundle published
on the way out."""
import os
import shutil

import pytest

import pthread_shim
from conftest import run
from workspace import make_workspace

CALLS = ("pthread_mutex_init", "pthread_cond_init", "pthread_create")


def walk(args, shim, name, check):
    """Runs args with call 1, 2, ... of name failing until one is not
    reached; check(r) judges each run that failed one.  The count."""
    for nth in range(1, 16):
        r = run(*args, env=pthread_shim.env(shim, name, nth, os.environ))
        if "SHIM: failed" not in r.stderr:
            assert r.returncode == 0, r.stderr
            return nth - 1
        assert r.returncode in (0, 1, 2, 3), (name, nth, r.returncode, r.stderr)
        if r.returncode:
            assert "cannot" in r.stderr and "Success" not in r.stderr, (name, nth, r.stderr)
        check(r)
    raise AssertionError(f"{name} still failing at call {nth}")


@pytest.fixture(scope="module")
def shim(tmp_path_factory):
    return pthread_shim.build(tmp_path_factory.mktemp("shim"))


def test_build_fails_cleanly_or_builds_the_same(nexus, shim, tmp_path):
    ws = make_workspace(tmp_path / "ws")
    out = tmp_path / "out"

    def check(r):
        # an error publishes nothing; a success is a whole bundle
        assert out.is_dir() == (r.returncode == 0), r.stderr
        shutil.rmtree(out, ignore_errors=True)
    seen = {}
    for name in CALLS:
        seen[name] = walk([nexus, "build", ws, "-o", out], shim, name, check)
        shutil.rmtree(out)      # the run that failed no call built it
    # the copy's hash thread needs all three, once per file copied
    assert all(n >= 3 for n in seen.values()), seen


def test_verify_fails_cleanly_or_gives_the_same_verdict(nexus, shim, tmp_path):
    ws = make_workspace(tmp_path / "ws")
    out = tmp_path / "out"
    r = run(nexus, "build", ws, "-o", out)
    assert r.returncode == 0, r.stderr

    def check(r):
        if r.returncode == 0:
            assert "PASS" in r.stdout, r.stdout
        else:   # the watchdog's condition or thread, with its own reason
            assert "cannot start the time-budget watchdog: " in r.stderr, r.stderr
    seen = {name: walk([nexus, "verify", out], shim, name, check) for name in CALLS}
    assert seen["pthread_cond_init"] >= 1 and seen["pthread_create"] >= 1, seen
