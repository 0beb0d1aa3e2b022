"""One signed policy for build and verify, teacher fingerprints that cannot
silently not run, and upgrades that keep older bundles verifiable (issue 15,
items 2, 4 and 7).

Each test builds a real bundle with `nexus build`, changes what an attacker
or an upgrade changes, and runs the real `nexus verify`.
"""
import hashlib
import json
import os
import pathlib
import random
import shutil
import string

import pytest

from conftest import RUNTIME_DIR, run
from test_build import build
from workspace import make_workspace, student_onnx

INFERENCE_WITH_MLFLOW = '''\
"""Serve the spam classifier."""
import json
import mlflow
import numpy as np


def predict(session, text):
    return json.dumps({"n": len(text)})
'''


def verify(nexus, bundle, *args, env=None):
    r = run(nexus, "verify", "--json", "--no-sandbox", *args, bundle, env=env)
    assert r.returncode in (0, 1), r.stderr
    return r.returncode, json.loads(r.stdout)


def codes(rep, severity=None):
    return {f["code"] for f in rep["findings"] if severity in (None, f["severity"])}


def finding(rep, code):
    return next(f for f in rep["findings"] if f["code"] == code)


def manifest(bundle):
    return json.loads((pathlib.Path(bundle) / "manifest.json").read_text())


def canonical(obj):
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def rewrite(bundle, files=None, edit=None):
    """Replace bundle files and re-list them in the manifest (keeping its
    policy and runtime record), as someone holding the bundle can: the
    signature, if any, no longer matches unless re-signed."""
    bundle = pathlib.Path(bundle)
    for d in [bundle] + [p for p in bundle.rglob("*") if p.is_dir()]:
        d.chmod(0o755)
    m = manifest(bundle)
    for rel, data in (files or {}).items():
        p = bundle / rel
        if p.exists():
            p.chmod(0o644)
        p.write_bytes(data)
        p.chmod(0o444)
        for f in m["files"]:
            if f["path"] == rel:
                f["sha256"] = hashlib.sha256(data).hexdigest()
                f["size_bytes"] = len(data)
    if edit:
        edit(m)
    mp = bundle / "manifest.json"
    mp.chmod(0o644)
    mp.write_text(canonical(m))
    mp.chmod(0o444)
    for d in [p for p in bundle.rglob("*") if p.is_dir()] + [bundle]:
        d.chmod(0o555)


@pytest.fixture(scope="module")
def keys(nexus, tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    assert run(nexus, "keygen", "-o", d / "rel").returncode == 0
    return d / "rel.key", d / "rel.pub"


def built(nexus, tmp_path, name="b", *extra, **ws_kw):
    ws = make_workspace(tmp_path / f"ws-{name}", **ws_kw)
    r = build(nexus, ws, tmp_path / name, *extra)
    assert r.returncode == 0, r.stderr
    return tmp_path / name


# -- the policy is recorded, signed and enforced -------------------------------------

def test_build_records_the_policy_it_enforced(nexus, tmp_path):
    b = built(nexus, tmp_path, extra_yaml=(
        "limits: {max_model_bytes: 4MiB, size_slack: 0.1}\n"
        "forbidden_terms: [wandb]\n"
        "allow_shared_tensors: [{name: classifier.weight, reason: shared head}]\n"))
    m = manifest(b)
    assert m["schema_version"] == "1.3"
    p = m["policy"]
    assert p["max_model_bytes"] == 4 << 20
    assert p["max_leak_bytes"] == 65536   # the default budget, enforced
    assert p["size_slack"] == "0.1"
    assert p["forbidden_terms"] == ["wandb"]
    assert p["forbidden_imports"] == ["teacher_model", "training_modules"]
    assert p["python_packages"] == ["numpy", "onnxruntime"]
    assert p["allow_shared_tensors"] == [{"name": "classifier.weight", "reason": "shared head"}]
    assert float(p["selftest_tolerance"]) == json.loads(
        (b / "config/selftest.json").read_text())["tolerance"] == 1e-4
    assert p["teacher_files"] == 2 and p["nexus_version"] == m["runtime"]["version"]
    digests = {f["path"]: f["sha256"] for f in m["files"]}
    assert [f["path"] for f in m["runtime"]["files"]] == ["THIRD_PARTY_NOTICES", "bin/nexus_cli",
                                                         "lib/libonnxruntime.so.1"]
    for f in m["runtime"]["files"]:
        assert f["sha256"] == digests[f["path"]]
    # the manifest is canonical as Python writes it (docs/FORMAT.md §2)
    assert (b / "manifest.json").read_text() == canonical(m)


def test_build_records_its_vocabulary_reference(nexus, tmp_path):
    """nexus build --vocab-reference charges the vocabulary against FILE in
    its self-verification and records FILE's SHA-256 in the signed policy
    (so a gate sees which reference a bundle was built against); without
    the option the key is absent.  Verify uses its own FILE, never this."""
    ref = tmp_path / "reference.json"
    ref.write_text(json.dumps(json.loads(make_workspace(tmp_path / "ws-ref").joinpath(
        "artifacts/tokenizer/tokenizer.json").read_text())))
    b = built(nexus, tmp_path, "b", "--vocab-reference", ref)
    m = manifest(b)
    assert m["policy"]["vocab_reference_sha256"] == hashlib.sha256(ref.read_bytes()).hexdigest()
    assert (b / "manifest.json").read_text() == canonical(m)
    rc, rep = verify(nexus, b, "--vocab-reference", ref)
    assert rc == 0, rep["findings"]
    assert any("--vocab-reference" in f["message"] and "the one the build recorded" in
               f["message"] for f in rep["findings"] if f["code"] == "budget-used"), rep["findings"]
    assert "vocab_reference_sha256" not in manifest(built(nexus, tmp_path, "c"))["policy"]
    r = build(nexus, make_workspace(tmp_path / "ws-d"), tmp_path / "d", "--vocab-reference",
              tmp_path / "missing.json")
    assert r.returncode != 0 and "missing.json" in r.stderr, r.stderr


def test_build_limit_is_enforced_by_verify(nexus, tmp_path):
    """The example's small build limit held verify to nothing: verify used
    its own 2 GiB.  A model swapped in after the build, over the recorded
    limit but far under 2 GiB, now fails."""
    b = built(nexus, tmp_path, extra_yaml="limits: {max_model_bytes: 64KiB}\n")
    rewrite(b, {"model/student_model.onnx": student_onnx(vocab_rows=4000)})
    rc, rep = verify(nexus, b)
    assert rc == 1 and "model-too-large" in codes(rep, "FAIL"), rep["findings"]
    assert "of 64.0 KiB (limits.max_model_bytes" in finding(rep, "model-too-large")["message"]
    # verify's own option cannot loosen the recorded limit ...
    rc, rep = verify(nexus, b, "--max-model-bytes", "1GiB")
    assert rc == 1 and "model-too-large" in codes(rep, "FAIL")
    assert "policy-kept" in codes(rep, "INFO")
    # ... unless the loosening is named, and then it is in the report
    for fmt in (("--json",), ()):
        r = run(nexus, "verify", "--no-sandbox", "--max-model-bytes", "1GiB",
                "--override-policy", "max_model_bytes", *fmt, b)
        assert "model-too-large" not in r.stdout and "policy-overridden" in r.stdout, r.stdout
    r = run(nexus, "verify", "--override-policy", "max_model_byte", b)
    assert r.returncode == 2 and "max_model_bytes, size_slack" in r.stderr
    rc, rep = verify(nexus, b, "--max-model-bytes", "1GiB", "--override-policy", "max_model_bytes")
    assert "model-too-large" not in codes(rep)
    assert finding(rep, "policy-overridden")["severity"] == "WARN"
    assert "1073741824" in finding(rep, "policy-overridden")["message"]


def test_recorded_leak_budget_is_enforced_by_verify(nexus, tmp_path):
    """limits.max_leak_bytes lowered the budget only at build; verify held
    the bundle to the default 64 KiB."""
    b = built(nexus, tmp_path, extra_yaml="limits: {max_leak_bytes: 4KiB}\n")
    assert manifest(b)["policy"]["max_leak_bytes"] == 4096
    rnd = random.Random(4)
    prose = " ".join("".join(rnd.choice(string.ascii_lowercase) for _ in range(rnd.randint(3, 8)))
                     for _ in range(1500))
    rewrite(b, {"README.md": (b / "README.md").read_bytes() + prose.encode() + b"\n"})
    rc, rep = verify(nexus, b)
    assert rc == 1 and "budget-exceeded" in codes(rep, "FAIL"), rep["findings"]
    rc, rep = verify(nexus, b, "--override-policy", "max_leak_bytes")
    assert "budget-exceeded" not in codes(rep) and "policy-overridden" in codes(rep, "WARN")


def test_large_build_limit_is_not_failed_by_verify_default(nexus, tmp_path, keys):
    """A student built with max_model_bytes: 4GiB was held to verify's 2 GiB
    default in CI; the signed policy's limit applies, visibly."""
    key, pub = keys
    b = built(nexus, tmp_path, "b", "--key", key,
              extra_yaml="limits: {max_model_bytes: 4GiB}\n")
    assert manifest(b)["policy"]["max_model_bytes"] == 4 << 30
    rc, rep = verify(nexus, b, "--pubkey", pub, "--strict")
    assert rc == 0 and rep["verdict"] == "PASS", rep["findings"]
    assert "4294967296" in finding(rep, "policy-differs")["message"]
    # verify's own flags still tighten it
    rc, rep = verify(nexus, b, "--pubkey", pub, "--max-model-bytes", "1KiB")
    assert rc == 1 and "model-too-large" in codes(rep, "FAIL")


def test_looser_policy_is_believed_only_when_signed(nexus, tmp_path, keys):
    key, pub = keys
    b = built(nexus, tmp_path, "b", "--key", key, extra_yaml="limits: {size_slack: 0.5}\n")
    rc, rep = verify(nexus, b, "--pubkey", pub)
    assert rc == 0 and "0.5" in finding(rep, "policy-differs")["message"]
    # the same policy without a trusted key: verify's default 5 % applies
    rc, rep = verify(nexus, b)
    assert "policy-untrusted" in codes(rep, "WARN"), rep["findings"]
    assert "0.05" in finding(rep, "policy-untrusted")["message"]


def test_recorded_forbidden_terms_are_enforced(nexus, tmp_path):
    b = built(nexus, tmp_path, extra_yaml="forbidden_terms: [wandb]\n")
    rc, rep = verify(nexus, b)
    assert rc == 0, rep["findings"]
    utils = (b / "src/utils.py").read_bytes() + b'\nRUN = "wandb-run"\n'
    rewrite(b, {"src/utils.py": utils})
    rc, rep = verify(nexus, b)
    assert rc == 1 and "term-in-string" in codes(rep, "FAIL"), rep["findings"]
    rc, rep = verify(nexus, b, "--override-policy", "forbidden_terms")
    assert "term-in-string" not in codes(rep) and "policy-overridden" in codes(rep, "WARN")


def test_recorded_forbidden_imports_are_enforced(nexus, tmp_path):
    b = built(nexus, tmp_path, inference_py=INFERENCE_WITH_MLFLOW,
              config={"forbidden_imports": "[teacher_model, training_modules, mlflow]"})
    assert "mlflow" in manifest(b)["policy"]["forbidden_imports"]
    assert b"import mlflow" not in (b / "src/inference.py").read_bytes()
    rc, rep = verify(nexus, b)
    assert rc == 0, rep["findings"]
    rewrite(b, {"src/inference.py": INFERENCE_WITH_MLFLOW.encode()})
    rc, rep = verify(nexus, b)
    assert rc == 1 and "forbidden-import" in codes(rep, "FAIL"), rep["findings"]
    f = finding(rep, "forbidden-import")
    assert f["path"] == "src/inference.py" and f["line"] == 3


def test_files_looser_than_the_recorded_policy_fail(nexus, tmp_path):
    """runtime.yaml and selftest.json are hashed, but a manifest re-listed by
    hand could pair them with a policy they break."""
    b = built(nexus, tmp_path)
    yaml = (b / "config/runtime.yaml").read_text().replace("[numpy, onnxruntime]",
                                                           "[numpy, onnxruntime, requests]")
    st = json.loads((b / "config/selftest.json").read_text())
    st["tolerance"] = 0.005
    rewrite(b, {"config/runtime.yaml": yaml.encode(),
                "config/selftest.json": json.dumps(st).encode()})
    rc, rep = verify(nexus, b)
    paths = {f["path"] for f in rep["findings"] if f["code"] == "policy-mismatch"}
    assert rc == 1 and paths == {"config/runtime.yaml", "config/selftest.json"}, rep["findings"]


def test_policy_strings_are_scanned_and_charged(nexus, tmp_path):
    """The policy's free text is packaged: a reason naming the teacher is
    prose (WARN), and data hidden in reasons counts against the leak budget."""
    b = built(nexus, tmp_path, extra_yaml=(
        "allow_shared_tensors: [{name: classifier.weight, reason: as in the teacher}]\n"))
    rc, rep = verify(nexus, b)
    assert "term-in-docs" in codes(rep, "WARN"), rep["findings"]
    assert finding(rep, "term-in-docs")["path"] == "manifest.json"
    # random letters in short words: no literal blob, but information
    rnd = random.Random(15)

    def words():
        return " ".join("".join(rnd.choice(string.ascii_lowercase)
                                for _ in range(rnd.randint(3, 8))) for _ in range(600))[:4000]

    rewrite(b, edit=lambda m: m["policy"]["allow_shared_tensors"].extend(
        {"name": f"t{i}", "reason": words()} for i in range(40)))
    rc, rep = verify(nexus, b)
    assert rc == 1 and "budget-exceeded" in codes(rep, "FAIL"), rep["findings"]


def test_tampered_policy_fails_the_signature(nexus, tmp_path, keys):
    key, pub = keys
    b = built(nexus, tmp_path, "b", "--key", key, extra_yaml="forbidden_terms: [wandb]\n")

    def loosen(m):
        m["policy"]["forbidden_terms"] = []
        m["policy"]["max_model_bytes"] = 1 << 40

    rewrite(b, edit=loosen)
    rc, rep = verify(nexus, b, "--pubkey", pub)
    assert rc == 1 and "bad-signature" in codes(rep, "FAIL"), rep["findings"]


def test_schema_1_0_bundle_still_verifies(nexus, tmp_path):
    """An older bundle (no policy, no runtime record) keeps verifying."""
    b = built(nexus, tmp_path)

    def to_1_1(m):       # before files[].mode
        for f in m["files"]:
            del f["mode"]
        del m["platform"]        # before the platform (1.3)
        m["schema_version"] = "1.1"

    def downgrade(m):
        del m["policy"], m["runtime"]
        m["schema_version"] = "1.0"

    rewrite(b, edit=to_1_1)
    rc, rep = verify(nexus, b, "--teacher", tmp_path / "ws-b/artifacts/teacher.onnx")
    assert rc == 0 and codes(rep, "FAIL") == set(), rep["findings"]
    rewrite(b, edit=downgrade)
    rc, rep = verify(nexus, b, "--teacher", tmp_path / "ws-b/artifacts/teacher.onnx")
    assert rc == 0 and codes(rep, "FAIL") == set(), rep["findings"]
    assert "policy-missing" in codes(rep, "INFO")
    # but 1.0 with a policy, or 1.1 without its runtime, is no manifest
    rewrite(b, edit=lambda m: m.update(policy={}))
    rc, rep = verify(nexus, b)
    assert "manifest-invalid" in codes(rep, "FAIL")


# -- no teacher, no silent skip ---------------------------------------------------------

def test_missing_teacher_warns_in_build_and_verify(nexus, tmp_path):
    ws = make_workspace(tmp_path / "ws", config={"teacher": None})
    r = build(nexus, ws, tmp_path / "b")
    assert r.returncode == 0, r.stderr
    assert "WARN weights no-teacher-fingerprint" in r.stdout
    assert manifest(tmp_path / "b")["policy"]["teacher_files"] == 0
    r = build(nexus, ws, tmp_path / "strict", "--strict")
    assert r.returncode == 1 and "no-teacher-fingerprint" in r.stderr
    assert not (tmp_path / "strict").exists()
    rc, rep = verify(nexus, tmp_path / "b")
    assert rc == 0 and "no-teacher-fingerprint" in codes(rep, "WARN")
    assert "--teacher" in finding(rep, "no-teacher-fingerprint")["message"]
    rc, rep = verify(nexus, tmp_path / "b", "--strict")
    assert rc == 1 and "no-teacher-fingerprint" in codes(rep, "FAIL")
    rc, rep = verify(nexus, tmp_path / "b", "--teacher", ws / "artifacts/teacher.onnx")
    assert "no-teacher-fingerprint" not in codes(rep)


def test_teacher_checked_at_build_needs_no_teacher_at_verify(nexus, tmp_path):
    b = built(nexus, tmp_path)
    rc, rep = verify(nexus, b, "--strict")
    assert "no-teacher-fingerprint" not in codes(rep)


# -- upgrades ------------------------------------------------------------------------------

def other_runtime(root, lists=()):
    """A nexus installation whose own runtime differs (a newer nexus_cli),
    with a trusted-runtimes list of its own release plus `lists`."""
    shutil.copytree(RUNTIME_DIR, root, ignore=shutil.ignore_patterns("trusted-runtimes"))
    cli = root / "bin" / "nexus_cli"
    cli.chmod(0o755)
    with open(cli, "ab") as f:
        f.write(b"\0newer release")
    lines = ["nexus 9.9.9"]
    for rel in ("bin/nexus_cli", "lib/libonnxruntime.so.1", "THIRD_PARTY_NOTICES"):
        lines.append(f"{hashlib.sha256((root / rel).read_bytes()).hexdigest()}  {rel}")
    text = "\n".join(lines) + "\n" + "".join(lists)
    (root / "trusted-runtimes").write_text(text)
    (root / "trusted-runtimes").chmod(0o644)
    return root


def own_list():
    text = (RUNTIME_DIR / "trusted-runtimes").read_text()
    assert text.startswith("nexus ")
    return text


def test_upgrade_keeps_bundles_of_listed_releases_verifiable(nexus, tmp_path):
    b = built(nexus, tmp_path)
    version = manifest(b)["runtime"]["version"]
    # the new installation does not list the bundle's release
    env = dict(os.environ, NEXUS_RUNTIME_DIR=str(other_runtime(tmp_path / "new")))
    rc, rep = verify(nexus, b, env=env)
    assert rc == 1 and "runtime-mismatch" in codes(rep, "FAIL")
    msg = finding(rep, "runtime-mismatch")["message"]
    assert "--trusted-list" in msg and f"nexus {version}" in msg
    # ... an external list does
    (tmp_path / "old.list").write_text(own_list())
    rc, rep = verify(nexus, b, "--trusted-list", tmp_path / "old.list", env=env)
    assert rc == 0 and "runtime-trusted" in codes(rep, "INFO"), rep["findings"]
    # ... or its own installed list does (make writes earlier releases into it)
    env = dict(os.environ, NEXUS_RUNTIME_DIR=str(other_runtime(tmp_path / "newer", [own_list()])))
    rc, rep = verify(nexus, b, env=env)
    assert rc == 0 and f"nexus {version}" in finding(rep, "runtime-trusted")["message"]
    # and the bundle's runtime really runs: TRV-5 executes it
    r = run(nexus, "verify", "--json", b, env=env)
    rep = json.loads(r.stdout)
    assert r.returncode == 0 and "functional-selftest-skipped" not in codes(rep), rep["findings"]


def test_trusted_list_is_whole_releases(nexus, tmp_path):
    """bin/ of one listed release with lib/ of another is no release, though
    each file is listed."""
    b = built(nexus, tmp_path)
    new = other_runtime(tmp_path / "new")
    fake = (b / "lib/libonnxruntime.so.1").read_bytes() + b"\0"
    mine_bin = hashlib.sha256((b / "bin/nexus_cli").read_bytes()).hexdigest()
    mine_lib = hashlib.sha256((b / "lib/libonnxruntime.so.1").read_bytes()).hexdigest()
    new_bin = hashlib.sha256((new / "bin/nexus_cli").read_bytes()).hexdigest()
    notices = hashlib.sha256((b / "THIRD_PARTY_NOTICES").read_bytes()).hexdigest()
    (tmp_path / "mixed.list").write_text(
        f"nexus 1.0.0\n{mine_bin}  bin/nexus_cli\n{mine_lib}  lib/libonnxruntime.so.1\n"
        f"{notices}  THIRD_PARTY_NOTICES\n"
        f"nexus 2.0.0\n{new_bin}  bin/nexus_cli\n"
        f"{hashlib.sha256(fake).hexdigest()}  lib/libonnxruntime.so.1\n"
        f"{notices}  THIRD_PARTY_NOTICES\n")
    rewrite(b, {"lib/libonnxruntime.so.1": fake})
    env = dict(os.environ, NEXUS_RUNTIME_DIR=str(new))
    rc, rep = verify(nexus, b, "--trusted-list", tmp_path / "mixed.list", env=env)
    assert rc == 1 and "runtime-trusted" not in codes(rep), rep["findings"]
    assert "runtime-mismatch" in codes(rep, "FAIL")


def test_installed_list_writable_by_others_is_not_trusted(nexus, tmp_path):
    b = built(nexus, tmp_path)
    rt = other_runtime(tmp_path / "new", [own_list()])
    (rt / "trusted-runtimes").chmod(0o666)
    rc, rep = verify(nexus, b, env=dict(os.environ, NEXUS_RUNTIME_DIR=str(rt)))
    assert rc == 1 and "runtime-untrusted" in codes(rep, "FAIL")
    assert "chmod go-w" in finding(rep, "runtime-untrusted")["message"]
