"""keygen -> sign -> independent checks with openssl and sha256sum.

The bundle is built here in Python (a few files plus a canonical manifest
written with the json module), so this also proves that Python's
json.dumps(indent=2, sort_keys=True) + "\\n" is the canonical form."""
import base64
import hashlib
import json
import os
import re
import stat
import subprocess

import pytest

from conftest import ROOT, run

FILES = {
    "README.md": b"# demo\n",
    "LICENSE": b"MIT\n",
    "config/runtime.yaml": b"task: raw\n",
    "model/student_model.onnx": b"\x08\x07" * 1000,
    "src/__init__.py": b"",
}


def canonical(obj):
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


def make_bundle(root):
    b = root / "nexus_bundle_v1"
    entries = []
    for rel, data in FILES.items():
        p = b / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        entries.append({"path": rel, "sha256": hashlib.sha256(data).hexdigest(),
                        "size_bytes": len(data)})
    manifest = {
        "schema_version": "1.0", "bundle_id": "nexus_bundle_v1",
        "build_timestamp": "2026-11-27T01:02:03Z",
        "model_metadata": {"architecture": "SpamStudent-2L", "parameters": "1K",
                           "format": "ONNX", "quantization": "none"},
        "invariants": {"teacher_free": True, "training_code_excluded": True},
        "files": sorted(entries, key=lambda e: e["path"]),
        "signature": "",
    }
    (b / "manifest.json").write_bytes(canonical(manifest))
    for dirpath, dirs, files in os.walk(b, topdown=False):
        for f in files:
            os.chmod(os.path.join(dirpath, f), 0o444)
        os.chmod(dirpath, 0o555)
    return b


def unlock(b):
    for dirpath, dirs, files in os.walk(b):
        os.chmod(dirpath, 0o755)


@pytest.fixture
def bundle(tmp_path):
    b = make_bundle(tmp_path)
    yield b
    unlock(b)


@pytest.fixture
def key(nexus, tmp_path):
    r = run(nexus, "keygen", "-o", tmp_path / "release")
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(r"[0-9a-f]{16}\n", r.stdout)
    return tmp_path / "release", r.stdout.strip()


def openssl_verify(nexus, bundle, pub, tmp_path):
    msg = tmp_path / "msg"
    r = subprocess.run([nexus, "manifest", str(bundle), "--signed-bytes"], capture_output=True)
    assert r.returncode == 0, r.stderr
    msg.write_bytes(r.stdout)
    sig = json.loads((bundle / "manifest.json").read_bytes())["signature"]
    (tmp_path / "sig.bin").write_bytes(base64.b64decode(sig.split(":")[2], validate=True))
    return run("openssl", "pkeyutl", "-verify", "-pubin", "-inkey", pub, "-rawin",
               "-in", msg, "-sigfile", tmp_path / "sig.bin")


def test_keygen_files_and_key_id(key):
    prefix, keyid = key
    priv, pub = prefix.with_suffix(".key"), prefix.with_suffix(".pub")
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert stat.S_IMODE(pub.stat().st_mode) == 0o644
    assert b"BEGIN PRIVATE KEY" in priv.read_bytes()
    der = subprocess.run(["openssl", "pkey", "-pubin", "-in", str(pub), "-outform", "DER"],
                         capture_output=True, check=True).stdout
    assert hashlib.sha256(der[-32:]).hexdigest()[:16] == keyid


def test_keygen_refuses_to_overwrite(nexus, key):
    prefix, _ = key
    before = prefix.with_suffix(".key").read_bytes()
    r = run(nexus, "keygen", "-o", prefix)
    assert r.returncode == 2
    assert "exists" in r.stderr
    assert prefix.with_suffix(".key").read_bytes() == before


def test_sign_then_openssl_and_sha256sum(nexus, bundle, key, tmp_path):
    prefix, keyid = key
    r = run(nexus, "sign", bundle, "--key", prefix.with_suffix(".key"), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["key_id"] == keyid
    text = (bundle / "manifest.json").read_bytes()
    m = json.loads(text)
    assert m["signature"] == out["signature"]
    assert m["signature"].startswith(f"ed25519:{keyid}:")
    assert canonical(m) == text  # still the Python-reproducible canonical form
    # Mode of the bundle and of the new manifest are as before.
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o555
    assert stat.S_IMODE((bundle / "manifest.json").stat().st_mode) == 0o444
    assert not [p for p in os.listdir(bundle) if ".tmp." in p]
    # The signed bytes are the prefix line + the manifest without signature.
    del m["signature"]
    signed = subprocess.run([nexus, "manifest", str(bundle), "--signed-bytes"],
                            capture_output=True, check=True).stdout
    assert signed == b"nexus-manifest-v1\n" + canonical(m)

    r = openssl_verify(nexus, bundle, prefix.with_suffix(".pub"), tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr

    sums = run(nexus, "manifest", bundle, "--sha256sum")
    assert sums.returncode == 0
    assert len(sums.stdout.splitlines()) == len(FILES)
    r = run("sha256sum", "-c", "--strict", cwd=bundle, input=sums.stdout)
    assert r.returncode == 0, r.stdout + r.stderr

    r = run(nexus, "manifest", bundle, "--json")
    assert r.returncode == 0 and r.stdout.encode() == text

    # Re-signing replaces the signature (and it still verifies).
    r = run(nexus, "sign", bundle, "--key", prefix.with_suffix(".key"))
    assert r.returncode == 0, r.stderr
    assert json.loads((bundle / "manifest.json").read_bytes())["signature"].count("ed25519:") == 1
    assert openssl_verify(nexus, bundle, prefix.with_suffix(".pub"), tmp_path).returncode == 0


def test_tampered_manifest_fails_openssl(nexus, bundle, key, tmp_path):
    prefix, _ = key
    assert run(nexus, "sign", bundle, "--key", prefix.with_suffix(".key")).returncode == 0
    os.chmod(bundle, 0o755)
    mf = bundle / "manifest.json"
    m = json.loads(mf.read_bytes())
    m["invariants"]["teacher_free"] = False
    os.chmod(mf, 0o644)
    mf.write_bytes(canonical(m))
    r = openssl_verify(nexus, bundle, prefix.with_suffix(".pub"), tmp_path)
    assert r.returncode != 0


def test_tampered_file_fails_sha256sum(nexus, bundle):
    sums = run(nexus, "manifest", bundle, "--sha256sum").stdout
    os.chmod(bundle / "LICENSE", 0o644)
    os.chmod(bundle, 0o755)
    (bundle / "LICENSE").write_bytes(b"GPL\n")
    r = run("sha256sum", "-c", cwd=bundle, input=sums)
    assert r.returncode != 0


def test_sign_refuses_world_readable_key(nexus, bundle, key):
    prefix, _ = key
    k = prefix.with_suffix(".key")
    os.chmod(k, 0o644)
    before = (bundle / "manifest.json").read_bytes()
    r = run(nexus, "sign", bundle, "--key", k)
    assert r.returncode in (2, 3)
    assert "chmod 600" in r.stderr
    assert (bundle / "manifest.json").read_bytes() == before


def test_sign_refuses_non_canonical_manifest(nexus, bundle, key):
    prefix, _ = key
    os.chmod(bundle, 0o755)
    mf = bundle / "manifest.json"
    os.chmod(mf, 0o644)
    mf.write_bytes(mf.read_bytes().replace(b'": ', b'":  ', 1))
    before = mf.read_bytes()
    r = run(nexus, "sign", bundle, "--key", prefix.with_suffix(".key"))
    assert r.returncode == 3
    assert "canonical" in r.stderr
    assert mf.read_bytes() == before
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o755


def test_manifest_usage_errors(nexus, bundle):
    assert run(nexus, "manifest").returncode == 2
    assert run(nexus, "manifest", bundle, "--sha256sum", "--json").returncode == 2
    assert run(nexus, "sign", bundle).returncode == 2
    assert run(nexus, "keygen").returncode == 2
    assert run(nexus, "manifest", bundle / "nope", "--json").returncode == 3



def test_verify_without_pubkey_warns_signature_unchecked(nexus, tmp_path):
    """A signed bundle verified with no key: not a tamper FAIL, but not a PASS."""
    b = tmp_path / "b"
    assert run(nexus, "keygen", "-o", tmp_path / "k").returncode == 0
    r = run(nexus, "build", ROOT / "examples/spam-distill", "-o", b, "--key", tmp_path / "k.key")
    assert r.returncode == 0, r.stderr
    r = run(nexus, "verify", "--json", b)
    rep = json.loads(r.stdout)
    assert r.returncode == 0 and rep["verdict"] == "WARN"
    assert {f["code"] for f in rep["findings"] if f["severity"] == "WARN"} == {"signature-unchecked"}
    r = run(nexus, "verify", "--json", "--require-signature", b)
    assert r.returncode == 1
    assert "signature-unchecked" in {f["code"] for f in json.loads(r.stdout)["findings"]
                                     if f["severity"] == "FAIL"}
