"""`nexus verify`'s report: the checks it lists, verdicts, exit statuses, the
human and JSON forms, and the options' grammar. (Regrouped by check from the
red-team files by scripts/dev/regroup_tests.py.)
"""
import json
import os

import pytest

import bundle_fixture as bf
from conftest import RUNTIME_DIR, run
from verify_helpers import check_status, codes, npy, verify


def test_clean_bundle_passes_with_only_expected_warnings(nexus, bundle):
    rc, rep = verify(nexus, bundle)
    assert rc == 0
    assert rep["verdict"] == "WARN"
    assert codes(rep, "FAIL") == set()
    assert codes(rep, "WARN") == {"unsigned"}
    assert [c["id"] for c in rep["checks"]] == [
        "integrity", "signature", "policy", "allowlist", "code", "budget", "weights", "size",
        "functional"]
    # a schema 1.0 manifest records no policy: verify's own limits apply
    assert "policy-missing" in codes(rep, "INFO")
    assert check_status(rep, "functional") == "SKIP"
    for c in ("integrity", "policy", "allowlist", "code", "weights", "size"):
        assert check_status(rep, c) == "PASS", rep


def test_no_sandbox_is_a_plain_skip_and_strict_turns_warn_into_exit_1(nexus, bundle):
    rc, rep = verify(nexus, bundle, "--no-sandbox")
    assert rc == 0 and codes(rep, "WARN") == {"unsigned"}
    rc, rep = verify(nexus, bundle, "--no-sandbox", "--strict")
    assert rc == 1 and rep["verdict"] == "WARN"
    rc, rep = verify(nexus, bundle, "--require-signature", "--no-sandbox")
    assert rc == 1 and "unsigned" in codes(rep, "FAIL")


def test_human_report_and_exit_codes(nexus, bundle, tmp_path):
    env = dict(os.environ, NEXUS_RUNTIME_DIR=str(bundle.runtime_dir))
    r = run(nexus, "verify", "--no-sandbox", bundle.root, env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("PASS  integrity")
    assert any(l.startswith("WARN signature unsigned manifest.json: ") for l in lines)
    assert lines[-1] == "verdict: WARN"
    assert run(nexus, "verify", tmp_path / "nope").returncode == 3
    assert run(nexus, "verify").returncode == 2
    assert run(nexus, "verify", bundle.root, "--max-model-bytes", "lots").returncode == 2


@pytest.mark.parametrize("opt", ["--max-model-bytes", "--max-leak-bytes"])
@pytest.mark.parametrize("size", ["nan", "inf", "nanGiB", "-0", "1e3", "0x10", "1.5B"])
def test_size_options_use_the_size_grammar(nexus, bundle, opt, size):
    """Sizes on the command line follow nexus.yaml's grammar (nx_parse_size):
    strtod accepted NaN, which was then cast to an integer (undefined)."""
    r = run(nexus, "verify", "--no-sandbox", bundle.root, opt, size)
    assert r.returncode == 2, (size, r.returncode, r.stderr)
    assert f"'{size}' is not a size" in r.stderr


def test_real_runtime_bundle(nexus, tmp_path):
    b = bf.Bundle(tmp_path / "real", RUNTIME_DIR)
    # the runtime is found from the binary (or $NEXUS_RUNTIME_DIR under e2e-asan)
    r = run(nexus, "verify", "--json", "--no-sandbox", "--teacher", b.teacher, b.root)
    rep = json.loads(r.stdout)
    assert r.returncode == 0, rep["findings"]
    assert codes(rep, "WARN") == {"unsigned"}
    b.unlock()


def test_ci_wrapper_exit_status_and_summary(nexus, bundle):
    wrapper = __import__("pathlib").Path(__file__).resolve().parents[2] / "verify_teacher_free.py"
    env = dict(os.environ, NEXUS=nexus, NEXUS_RUNTIME_DIR=str(bundle.runtime_dir))
    r = run("/usr/bin/python3", wrapper, bundle.root, "--no-sandbox", env=env)
    assert r.returncode == 0, r.stderr
    assert "teacher-free verdict: WARN" in r.stdout
    bundle.smuggle("src/helpers.py", npy())
    r = run("/usr/bin/python3", wrapper, bundle.root, env=env)
    assert r.returncode == 1
    assert "FAIL allowlist weights-content src/helpers.py" in r.stdout
