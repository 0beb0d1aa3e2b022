"""The signature check: signed by a trusted key, by an unknown one, or edited
after signing. (Regrouped by check from the red-team files by
scripts/dev/regroup_tests.py.)
"""
from conftest import run
from verify_helpers import codes, expect_fail, manifest_obj, sign, verify


def test_signed_by_trusted_key(nexus, bundle, tmp_path):
    pub = sign(nexus, bundle, tmp_path)
    rc, rep = verify(nexus, bundle, "--pubkey", pub, "--require-signature", "--no-sandbox")
    assert rc == 0 and rep["verdict"] == "PASS", rep["findings"]
    assert "signed" in codes(rep, "INFO")


def test_signed_by_unknown_key(nexus, bundle, tmp_path):
    sign(nexus, bundle, tmp_path, "attacker")
    run(nexus, "keygen", "-o", tmp_path / "release")
    expect_fail(nexus, bundle, "unknown-key", "--pubkey", tmp_path / "release.pub")


def test_manifest_edited_after_signing(nexus, bundle, tmp_path):
    pub = sign(nexus, bundle, tmp_path)
    m = manifest_obj(bundle)
    m["model_metadata"]["architecture"] = "Other"
    bundle.write_manifest_text(bundle.canonical(m))
    expect_fail(nexus, bundle, "bad-signature", "--pubkey", pub)
