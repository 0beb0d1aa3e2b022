"""Attestations of the verify result (issue #20, item 5): `nexus verify
--attest` writes an in-toto Statement in a DSSE envelope signed with the
release key; OpenSSL checks it with the commands docs/FORMAT.md §8.5 gives;
`nexus push --attest` attaches it as a referrer (distribution 2.8 has no
referrers API: the sha256-<hex> tag index); `nexus pull
--require-attestation` refuses an artifact without a valid one before any
file is downloaded, and publishes nothing."""
import base64
import hashlib
import json
import os
import re
import subprocess

import jsonschema
import pytest

import oci_fixture as of
from conftest import ROOT, run
from test_oci import env, nothing_published, proxy, pull, push, registry, repo  # noqa: F401

pytestmark = pytest.mark.skipif(not of.REGISTRY, reason="docker-registry not installed "
                                "(scripts/setup.sh)")

PAYLOAD_TYPE = "application/vnd.in-toto+json"
MEDIA = "application/vnd.dsse.envelope.v1+json"


@pytest.fixture
def keys(nexus, tmp_path):
    assert run(nexus, "keygen", "-o", tmp_path / "rel").returncode == 0
    assert run(nexus, "keygen", "-o", tmp_path / "other").returncode == 0
    return tmp_path / "rel.key", tmp_path / "rel.pub", tmp_path / "other.key", tmp_path / "other.pub"


def attest(nexus, b, out, key, env):
    return run(nexus, "verify", "--no-sandbox", "--attest", out, "--key", key, b.root, env=env)


def pae(ptype, payload):
    return b"DSSEv1 %d %s %d " % (len(ptype), ptype.encode(), len(payload)) + payload


def sign_envelope(key_pem, statement):
    """A DSSE envelope signed in Python (cryptography) with a nexus key."""
    from cryptography.hazmat.primitives import serialization
    k = serialization.load_pem_private_key(key_pem.read_bytes(), None)
    payload = json.dumps(statement, separators=(",", ":"), sort_keys=True).encode()
    sig = k.sign(pae(PAYLOAD_TYPE, payload))
    return json.dumps({"payload": base64.b64encode(payload).decode(), "payloadType": PAYLOAD_TYPE,
                       "signatures": [{"keyid": "x", "sig": base64.b64encode(sig).decode()}]})


def test_attestation_is_an_in_toto_statement_of_the_report(nexus, bundle, env, keys, tmp_path):
    key, pub, _, _ = keys
    out = tmp_path / "a.dsse"
    r = attest(nexus, bundle, out, key, env)
    assert r.returncode == 0, r.stderr
    e = json.loads(out.read_bytes())
    assert e["payloadType"] == PAYLOAD_TYPE and len(e["signatures"]) == 1
    st = json.loads(base64.b64decode(e["payload"]))
    schema = json.loads((ROOT / "docs/schema/nexus.attestation.v1.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(st)
    verify_schema = json.loads((ROOT / "docs/schema/nexus.verify.v1.json").read_text())
    jsonschema.Draft202012Validator(verify_schema).validate(st["predicate"])
    subj = {s["name"]: s["digest"]["sha256"] for s in st["subject"]}
    assert subj["manifest.json"] == hashlib.sha256(bundle.path("manifest.json").read_bytes()).hexdigest()
    assert subj["model/student_model.onnx"] == hashlib.sha256(
        bundle.path("model/student_model.onnx").read_bytes()).hexdigest()
    manifest, _ = of.artifact_manifest(bundle.root)
    assert subj["oci-image-manifest"] == hashlib.sha256(manifest).hexdigest()
    report = json.loads(run(nexus, "verify", "--no-sandbox", "--json", bundle.root, env=env).stdout)
    assert st["predicate"]["verdict"] == report["verdict"]
    assert [c["id"] for c in st["predicate"]["checks"]] == [c["id"] for c in report["checks"]]
    assert re.fullmatch(r"[0-9a-f]{16}", e["signatures"][0]["keyid"])


def test_attest_needs_a_private_key(nexus, bundle, env, keys, tmp_path):
    _, pub, _, _ = keys
    r = run(nexus, "verify", "--no-sandbox", "--attest", tmp_path / "a", bundle.root, env=env)
    assert r.returncode == 2 and "--key" in r.stderr
    r = attest(nexus, bundle, tmp_path / "a", pub, env)
    assert r.returncode != 0 and not (tmp_path / "a").exists()


def documented_commands():
    text = (ROOT / "docs/FORMAT.md").read_text()
    block = re.search(r"<!-- attest-check:begin -->\n```sh\n(.*?)```", text, re.S)
    assert block, "docs/FORMAT.md lost its attest-check block"
    return block.group(1)


def test_documented_openssl_check(nexus, bundle, env, keys, tmp_path):
    key, pub, _, other = keys
    out = tmp_path / "a.dsse"
    assert attest(nexus, bundle, out, key, env).returncode == 0
    script = documented_commands()

    def check(envelope, pubkey):
        return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path,
                              env=dict(os.environ, ENV=str(envelope), PUB=str(pubkey)),
                              capture_output=True, text=True)
    r = check(out, pub)
    assert r.returncode == 0, r.stderr
    assert "Signature Verified Successfully" in r.stdout
    assert hashlib.sha256(bundle.path("manifest.json").read_bytes()).hexdigest() in r.stdout
    # the commands can fail: another key, or one changed byte of the payload
    assert check(out, other).returncode != 0
    e = json.loads(out.read_text())
    st = base64.b64decode(e["payload"]).replace(b'"PASS"', b'"PASX"').replace(b'"WARN"', b'"WARX"')
    e["payload"] = base64.b64encode(st).decode()
    bad = tmp_path / "bad.dsse"
    bad.write_text(json.dumps(e))
    assert check(bad, pub).returncode != 0


def test_push_attest_then_pull_requires_it(nexus, registry, bundle, env, keys, tmp_path, request):
    key, pub, _, other = keys
    a = tmp_path / "a.dsse"
    assert attest(nexus, bundle, a, key, env).returncode == 0
    ref = f"{registry.host}/{repo(request)}:v1"
    r = push(nexus, bundle, ref, env, "--attest", a, "--pubkey", pub, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["attached_by"] == "tag"   # distribution 2.8: no referrers API
    # the referrers tag schema: an OCI index at sha256-<hex> naming our manifest
    s = run("skopeo", "inspect", "--tls-verify=false", "--raw",
            f"docker://{ref.rsplit(':', 1)[0]}:sha256-{doc['digest'][7:]}")
    assert s.returncode == 0, s.stderr
    idx = json.loads(s.stdout)
    assert [m["digest"] for m in idx["manifests"] if m["artifactType"] == MEDIA] == [doc["attestation"]]
    # pushing twice does not list it twice
    assert push(nexus, bundle, ref, env, "--attest", a).returncode == 0
    s = run("skopeo", "inspect", "--tls-verify=false", "--raw",
            f"docker://{ref.rsplit(':', 1)[0]}:sha256-{doc['digest'][7:]}")
    assert len(json.loads(s.stdout)["manifests"]) == 1
    out = tmp_path / "o"
    r = pull(nexus, ref, out, env, "--require-attestation", "--pubkey", pub, "--json")
    assert r.returncode == 0, r.stderr
    keyid = json.loads(a.read_text())["signatures"][0]["keyid"]
    assert json.loads(r.stdout)["attested_by"] == keyid
    # another release's key: refused, nothing published
    out2 = tmp_path / "o2"
    r = pull(nexus, ref, out2, env, "--require-attestation", "--pubkey", other)
    assert r.returncode == 1 and "no valid signature by a trusted key" in r.stderr, r.stderr
    nothing_published(out2)


def test_require_attestation_needs_a_pubkey(nexus, env, tmp_path):
    r = run(nexus, "pull", "--require-attestation", "h.io/a:b", "-o", tmp_path / "o", env=env)
    assert r.returncode == 2 and "--pubkey" in r.stderr


def refused_before_download(nexus, proxy, bundle, ref, out, env, pub, words):
    proxy.log.clear()
    r = pull(nexus, ref, out, env, "--require-attestation", "--pubkey", pub)
    assert r.returncode == 1 and words in r.stderr, r.stderr
    nothing_published(out)
    model = hashlib.sha256(bundle.path("model/student_model.onnx").read_bytes()).hexdigest()
    assert not proxy.requests("GET", model), "a file was fetched before the attestation check"


def test_missing_attestation_refused(nexus, registry, proxy, bundle, env, keys, tmp_path, request):
    _, pub, _, _ = keys
    ref = f"{proxy.host}/{repo(request)}:v1"
    assert push(nexus, bundle, ref, env).returncode == 0
    refused_before_download(nexus, proxy, bundle, ref, tmp_path / "o", env, pub,
                            "has no attestation")


INVALID = {
    "bad-signature": "no valid signature by a trusted key",
    "other-subject": "about another bundle",
    "fail-verdict": "verdict is FAIL",
    "other-predicate": "not an in-toto Statement v1 of urn:nexus:verify:v1",
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_attestation_refused(nexus, registry, proxy, bundle, env, keys, tmp_path, request,
                                     case):
    key, pub, _, _ = keys
    words = INVALID[case]
    a = tmp_path / "a.dsse"
    assert attest(nexus, bundle, a, key, env).returncode == 0
    e = json.loads(a.read_text())
    st = json.loads(base64.b64decode(e["payload"]))
    if case == "bad-signature":    # a changed payload under the old signature
        st["predicate"]["verdict"] = "PASS" if st["predicate"]["verdict"] == "WARN" else "WARN"
        e["payload"] = base64.b64encode(json.dumps(st).encode()).decode()
        text = json.dumps(e)
    else:                          # validly signed, but not about this bundle's good result
        if case == "other-subject":
            for s in st["subject"]:
                if s["name"] == "manifest.json":
                    s["digest"]["sha256"] = "0" * 64
        elif case == "fail-verdict":
            st["predicate"]["verdict"] = "FAIL"
        else:
            st["predicateType"] = "https://slsa.dev/provenance/v1"
        text = sign_envelope(key, st)
    a.write_text(text)
    ref = f"{proxy.host}/{repo(request)}:v1"
    # push does not check without --pubkey: a registry may hold anything
    r = push(nexus, bundle, ref, env, "--attest", a)
    assert r.returncode == 0, r.stderr
    refused_before_download(nexus, proxy, bundle, ref, tmp_path / "o", env, pub, words)


def test_push_checks_the_attestation_with_pubkey(nexus, registry, bundle, env, keys, tmp_path,
                                                 request):
    key, pub, other_key, _ = keys
    a = tmp_path / "a.dsse"
    assert attest(nexus, bundle, a, other_key, env).returncode == 0
    ref = f"{registry.host}/{repo(request)}:v1"
    r = push(nexus, bundle, ref, env, "--attest", a, "--pubkey", pub)
    assert r.returncode == 1 and "no valid signature" in r.stderr, r.stderr
