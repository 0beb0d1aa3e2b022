"""The functional check (TRV-5): what runs, when it runs, and what the sandbox
contains. (Regrouped by check from the red-team files by
scripts/dev/regroup_tests.py.)
"""
import json
import os
import time

import pytest

from conftest import run
from smuggling import IMPORT_PROBE, PROBE_C
from test_build import build
from verify_helpers import check_status, codes, verify
from workspace import make_workspace
from insider_doors import dead_among_many
from insider_doors import dead_among_many_decode
import workspace as ws


def test_planted_nexus_cli_is_refused_and_contained(nexus, bundle, tmp_path, sandbox_backend):
    import subprocess
    mark = tmp_path / "host_owned"
    src = tmp_path / "probe.c"
    src.write_text(PROBE_C.replace("HOSTMARK", str(mark)))
    exe = tmp_path / "probe"
    subprocess.run(["cc", "-O0", "-o", str(exe), str(src)], check=True)
    bundle.smuggle("bin/nexus_cli", exe.read_bytes())
    rc, rep = verify(nexus, bundle, sandbox=True, timeout=120)
    assert rc == 1
    assert "runtime-mismatch" in codes(rep, "FAIL")
    # verify never executes a runtime it does not trust (nor anything of a
    # bundle whose allow-list FAILed)
    assert "functional-skipped" in codes(rep, "INFO")
    assert "probe done" not in json.dumps(rep)
    # nexus run does execute it, in the sandbox: it sees nothing of the host
    r = run(nexus, "run", bundle.root, "--text", "x", timeout=60)
    assert "probe done (contained)" in r.stderr, r.stderr
    assert "ESCAPED" not in r.stderr
    assert not mark.exists() and not os.path.exists("/tmp/nexus_probe_owned")
    assert not bundle.path("owned").exists() and not bundle.path("bin/owned").exists()


@pytest.mark.parametrize("catch", [True, False], ids=["attempts-caught", "attempt-raises"])
def test_python_import_time_escape_is_contained(nexus, tmp_path, catch, sandbox_backend):
    """A src/ module that probes the host when imported: the import check
    runs it in the sandbox, where it sees nothing.  An attempt whose error
    escapes fails the import; an attempt the module catches is contained
    but not reported (docs/TRV.md, Known limits)."""
    from workspace import UTILS_PY
    mark = tmp_path / "host_owned"
    probe = IMPORT_PROBE.replace("HOSTMARK", str(mark))
    if not catch:
        probe = "open('/etc/shadow').read()\n" + probe
    ws = make_workspace(tmp_path / "ws", utils_py=UTILS_PY + probe)
    r = build(nexus, ws, tmp_path / "b")
    assert "ESCAPED" not in r.stdout + r.stderr, r.stderr
    assert not mark.exists()
    if catch:
        assert r.returncode == 0, r.stderr
        env = dict(os.environ)
        rv = run(nexus, "verify", "--json", tmp_path / "b", env=env, timeout=120)
        assert rv.returncode == 0, rv.stdout
        assert "ESCAPED" not in rv.stdout
        assert not mark.exists()
    else:
        assert r.returncode == 1, r.stderr
        assert "functional-import-io" in r.stderr, r.stderr
        # build names the workspace file the bundle's src/utils.py came from
        assert "serving/utils.py" in r.stderr, r.stderr
        assert not (tmp_path / "b").exists()


def test_planted_nexus_cli_not_run_when_findings_flood_the_report(nexus, bundle, tmp_path,
                                                                 sandbox_backend):
    """2100 extra files push runtime-mismatch past the 2000 stored findings:
    the decision not to execute must not depend on what the report kept."""
    import subprocess
    src = tmp_path / "sleep.c"
    src.write_text("#include <unistd.h>\nint main(void){ sleep(4); return 3; }\n")
    exe = tmp_path / "sleep"
    subprocess.run(["cc", "-O0", "-o", str(exe), str(src)], check=True)
    bundle.smuggle("bin/nexus_cli", exe.read_bytes())
    bundle.unlock()
    for i in range(2100):
        (bundle.root / "src" / f"f{i}.py").write_text("")
    bundle.lock()
    rc, rep = verify(nexus, bundle, sandbox=True, timeout=120)
    assert rc == 1 and rep["dropped_findings"] > 0
    fn = next(c for c in rep["checks"] if c["id"] == "functional")
    assert fn["duration_ms"] < 3000, fn


@pytest.mark.parametrize("rel", ["src/utils.py", "model/student_model.onnx", "config/runtime.yaml"])
def test_fifo_in_place_of_a_file_fails_fast_and_runs_nothing(nexus, bundle, rel):
    """A FIFO (no writer) where a bundle file was: integrity FAILs, no open
    blocks, and the functional check reports SKIP instead of running the
    bundle (today it waited for the sandbox's full timeout)."""
    bundle.unlock()
    bundle.path(rel).unlink()
    os.mkfifo(bundle.path(rel), 0o644)
    t0 = time.monotonic()
    rc, rep = verify(nexus, bundle, sandbox=True, timeout=120)
    assert time.monotonic() - t0 < 20
    assert rc == 1 and check_status(rep, "integrity") == "FAIL"
    assert check_status(rep, "functional") == "SKIP"
    skip = [f for f in rep["findings"] if f["check"] == "functional"]
    assert [f["message"] for f in skip] == ["skipped: integrity failed"], skip


def test_allowlist_failure_also_runs_nothing(nexus, bundle):
    bundle.write("notes.txt", "an extra file\n")
    bundle.regen_manifest()
    rc, rep = verify(nexus, bundle, sandbox=True, timeout=120)
    assert rc == 1 and check_status(rep, "allowlist") == "FAIL"
    assert check_status(rep, "functional") == "SKIP"
    assert any(f["check"] == "functional" and f["message"] == "skipped: integrity failed"
               for f in rep["findings"])


def test_insider_liveness_out_of_time_refused(nexus, tmp_path, release_key_file, monkeypatch):
    from token_payloads import teacher_bytes
    root = ws.make_workspace(tmp_path / "ws")
    raw = teacher_bytes()
    dead_among_many(root, raw)
    assert dead_among_many_decode(root) == raw
    monkeypatch.setenv("NEXUS_LIVENESS_BUDGET_MS", "1500")
    # refused either way: the dead tensor found in time, or the check not finished
    out = tmp_path / "out" / "nexus_bundle_v1"
    out.parent.mkdir()
    r = run(nexus, "build", root, "-o", out, "--key", release_key_file, timeout=300)
    assert r.returncode == 1 and not out.exists(), r.stdout[-3000:] + r.stderr[-3000:]
    assert "liveness-sampled" in r.stdout + r.stderr or "dead-initializer" in r.stdout + r.stderr
