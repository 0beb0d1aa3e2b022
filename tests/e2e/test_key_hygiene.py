"""Key hygiene and machine-readable failures (issue 15, item 3).

- a private key passed as --pubkey is a usage error that names the .pub;
- `nexus sign` checks the files against the manifest before signing;
- `--json` prints one JSON document on stdout on every verb, failures too.
"""
import json
import os

import pytest

from conftest import run
from test_sign import bundle, key  # noqa: F401
from workspace import make_workspace


def one_document(r):
    """stdout is exactly one JSON document; returns it."""
    doc, end = json.JSONDecoder().raw_decode(r.stdout)
    assert not r.stdout[end:].strip(), r.stdout
    return doc


def test_private_key_as_pubkey_is_refused(nexus, bundle, key):  # noqa: F811
    prefix, _ = key
    priv = prefix.with_suffix(".key")
    assert run(nexus, "sign", bundle, "--key", priv).returncode == 0
    r = run(nexus, "verify", bundle, "--no-sandbox", "--pubkey", priv)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "private key" in r.stderr and str(prefix.with_suffix(".pub")) in r.stderr
    assert "PASS" not in r.stdout
    r = run(nexus, "verify", bundle, "--no-sandbox", "--json", "--pubkey", priv)
    doc = one_document(r)
    assert r.returncode == 2 and doc["schema"] == "nexus.error.v1"
    assert doc["exit_status"] == 2 and doc["error"]["code"] == "config"
    assert doc["error"]["path"] == str(priv)


def test_sign_refuses_a_modified_bundle(nexus, bundle, key):  # noqa: F811
    prefix, _ = key
    before = (bundle / "manifest.json").read_bytes()
    os.chmod(bundle / "src", 0o755)
    os.chmod(bundle / "src/__init__.py", 0o644)
    (bundle / "src/__init__.py").write_text("import teacher_model\n")
    os.chmod(bundle / "src/__init__.py", 0o444)
    os.chmod(bundle / "src", 0o555)
    r = run(nexus, "sign", bundle, "--key", prefix.with_suffix(".key"))
    assert r.returncode == 1, r.stderr
    assert "src/__init__.py" in r.stderr and "not signed" in r.stderr
    assert (bundle / "manifest.json").read_bytes() == before
    r = run(nexus, "sign", bundle, "--key", prefix.with_suffix(".key"), "--json")
    doc = one_document(r)
    assert r.returncode == 1 and doc["error"]["code"] == "check"
    assert "src/__init__.py" in doc["error"]["message"]


def test_sign_refuses_an_extra_file(nexus, bundle, key):  # noqa: F811
    prefix, _ = key
    os.chmod(bundle, 0o755)
    (bundle / "extra.bin").write_bytes(b"\0" * 16)
    os.chmod(bundle, 0o555)
    r = run(nexus, "sign", bundle, "--key", prefix.with_suffix(".key"))
    assert r.returncode == 1 and "extra.bin" in r.stderr, r.stderr


def failing_invocations(tmp_path, bundle):
    ws = make_workspace(tmp_path / "ws", config={"architecture": "[unterminated"})
    return {
        "build-usage": (2, ["build", "--bogus"]),
        "build-io": (3, ["build", tmp_path / "missing"]),
        "build-yaml": (2,   # a configuration error, as an unknown key is (issue 21)
                       ["build", ws, "-o", tmp_path / "out"]),
        "verify-usage": (2, ["verify"]),
        "verify-io": (3, ["verify", tmp_path / "missing"]),
        "inspect-usage": (2, ["inspect"]),
        "inspect-io": (3, ["inspect", tmp_path / "missing.onnx"]),
        "keygen-usage": (2, ["keygen"]),
        "keygen-exists": (2, ["keygen", "-o", tmp_path / "k"]),
        "sign-usage": (2, ["sign", bundle]),
        "sign-io": (3, ["sign", bundle, "--key", tmp_path / "missing.key"]),
        "manifest-usage": (2, ["manifest", bundle, "--sha256sum", "--signed-bytes"]),
        "manifest-io": (3, ["manifest", tmp_path / "missing"]),
        "run-usage": (2, ["run", bundle]),
        "run-io": (3, ["run", tmp_path / "missing", "--text", "x"]),
        "unknown-verb": (2, ["frobnicate"]),
    }


CASES = ["build-usage", "build-io", "build-yaml", "verify-usage", "verify-io", "inspect-usage",
         "inspect-io", "keygen-usage", "keygen-exists", "sign-usage", "sign-io",
         "manifest-usage", "manifest-io", "run-usage", "run-io", "unknown-verb"]


@pytest.mark.parametrize("case", CASES)
def test_json_failure_is_one_error_document(nexus, tmp_path, bundle, case):  # noqa: F811
    (tmp_path / "k.key").write_text("x")
    status, args = failing_invocations(tmp_path, bundle)[case]
    r = run(nexus, *args, "--json")
    assert r.returncode == status, r.stderr
    doc = one_document(r)
    assert doc["schema"] == "nexus.error.v1" and doc["exit_status"] == status
    assert doc["verb"] == str(args[0])
    assert set(doc["error"]) >= {"code", "message", "path"} and doc["error"]["message"]
    assert r.stderr  # the human message is still there


def test_json_success_documents(nexus, tmp_path, bundle):  # noqa: F811
    r = run(nexus, "keygen", "-o", tmp_path / "rel", "--json")
    doc = one_document(r)
    assert r.returncode == 0 and doc["schema"] == "nexus.keygen.v1"
    assert doc["public_key"] == str(tmp_path / "rel.pub") and len(doc["key_id"]) == 16
    keyid = doc["key_id"]
    r = run(nexus, "sign", bundle, "--key", tmp_path / "rel.key", "--json")
    doc = one_document(r)
    assert r.returncode == 0 and doc["schema"] == "nexus.sign.v1" and doc["key_id"] == keyid
