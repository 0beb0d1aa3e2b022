"""What ships beside the model (issue 21, item 5): THIRD_PARTY_NOTICES, the
licence texts of everything a bundle redistributes, and the manifest's
`platform` (os, arch, minimum glibc) that nexus_cli holds the host to.

One real bundle is built per module; every test copies what it changes.
The host checks are tested with a manifest that names another machine or a
newer glibc and is re-signed, as a release key holder could: no test hook
exists in the runtime.
"""
import hashlib
import json
import os
import pathlib
import platform
import re
import shutil
import subprocess

import pytest

from conftest import BUILD, RUNTIME_DIR, run
from test_build import build
from test_policy import rewrite
from workspace import make_workspace

ROOT = pathlib.Path(__file__).resolve().parents[2]
NOTICES = "THIRD_PARTY_NOTICES"


@pytest.fixture(scope="module")
def bundle(nexus, tmp_path_factory):
    d = tmp_path_factory.mktemp("ship")
    ws = make_workspace(d / "ws")
    r = build(nexus, ws, d / "b")
    assert r.returncode == 0, r.stderr
    return d / "b"


@pytest.fixture(scope="module")
def keys(nexus, tmp_path_factory):
    k = tmp_path_factory.mktemp("keys") / "k"
    assert run(nexus, "keygen", "-o", k).returncode == 0
    return k


def copy(bundle, dst):
    subprocess.run(["cp", "-a", bundle, dst], check=True)
    return dst


def manifest(b):
    return json.loads((pathlib.Path(b) / "manifest.json").read_text())


def verify(nexus, b, *args):
    r = run(nexus, "verify", "--json", "--no-sandbox", b, *args)
    assert r.returncode in (0, 1), r.stderr
    return r.returncode, json.loads(r.stdout)


def fails(rep):
    return {f["code"] for f in rep["findings"] if f["severity"] == "FAIL"}


# -- THIRD_PARTY_NOTICES ------------------------------------------------------------

def test_notices_ship_as_the_runtime_ships_them(bundle):
    data = (bundle / NOTICES).read_bytes()
    assert data == (RUNTIME_DIR / NOTICES).read_bytes()
    m = manifest(bundle)
    entry = {f["path"]: f for f in m["files"]}[NOTICES]
    assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["mode"] == "0444"
    assert NOTICES in [f["path"] for f in m["runtime"]["files"]]
    # the installation trusts it as part of its own release
    assert f"{entry['sha256']}  {NOTICES}" in (RUNTIME_DIR / "trusted-runtimes").read_text()


def test_notices_name_everything_the_link_took(bundle):
    """Every system archive a member was taken from (ld -t -t of nexus_cli's
    link) has its Debian copyright in the notices, and ONNX Runtime its own."""
    text = (bundle / NOTICES).read_text()
    trace = (BUILD / "nexus_cli.trace").read_text()
    archives = {os.path.basename(a) for a in re.findall(r"^\((/[^)]+\.a)\)", trace, re.M)}
    assert {"libcrypto.a", "libjansson.a", "libyaml.a", "libutf8proc.a"} <= archives
    for a in archives:
        assert re.search(rf"^Debian package \S+ \S+, statically linked into bin/nexus_cli "
                         rf"\([^)]*\b{re.escape(a)}\b", text, re.M), a
    assert "ONNX Runtime 1.30.0 (lib/libonnxruntime.so.1): ThirdPartyNotices.txt" in text
    assert "Microsoft Corporation" in text and "Apache License" in text
    # a licence named only by its Debian path is there in full
    assert "Licence text Apache-2.0" in text and "TERMS AND CONDITIONS FOR USE" in text


def test_verify_passes_notices_and_charges_them_nothing(nexus, bundle):
    rc, rep = verify(nexus, bundle)
    assert not fails(rep), rep["findings"]
    used = {f["path"] for f in rep["findings"] if f["code"] == "budget-used"}
    assert NOTICES not in used
    assert "unexpected-path" not in {f["code"] for f in rep["findings"]}


def test_changed_notices_are_not_the_trusted_runtime(nexus, bundle, tmp_path, keys):
    """A word added to the notices, re-listed and re-signed, is a runtime that
    no release ships: refused, not charged as a discount."""
    b = copy(bundle, tmp_path / "b")
    data = (b / NOTICES).read_bytes() + b"\nsecret: 6f2a...\n"
    rewrite(b, {NOTICES: data}, edit=lambda m: [f.update(sha256=hashlib.sha256(data).hexdigest())
                                                 for f in m["runtime"]["files"]
                                                 if f["path"] == NOTICES])
    assert run(nexus, "sign", b, "--key", f"{keys}.key").returncode == 0
    rc, rep = verify(nexus, b, "--pubkey", f"{keys}.pub")
    assert rc == 1 and "runtime-mismatch" in fails(rep), rep["findings"]
    assert any(f["code"] == "runtime-mismatch" and f["path"] == NOTICES for f in rep["findings"])


def test_missing_notices_fail(nexus, bundle, tmp_path):
    b = copy(bundle, tmp_path / "b")

    def drop(m):
        m["files"] = [f for f in m["files"] if f["path"] != NOTICES]
        m["runtime"]["files"] = [f for f in m["runtime"]["files"] if f["path"] != NOTICES]
    b.chmod(0o755)
    (b / NOTICES).unlink()
    rewrite(b, edit=drop)
    rc, rep = verify(nexus, b)
    assert rc == 1 and "runtime-missing" in fails(rep), rep["findings"]


def test_runtime_dir_without_notices_is_a_clear_build_error(nexus, tmp_path):
    rt = tmp_path / "rt"
    shutil.copytree(RUNTIME_DIR, rt)
    (rt / NOTICES).chmod(0o644)
    (rt / NOTICES).unlink()
    ws = make_workspace(tmp_path / "ws")
    r = build(nexus, ws, tmp_path / "b", env=dict(os.environ, NEXUS_RUNTIME_DIR=str(rt)))
    assert r.returncode == 3 and NOTICES in r.stderr, r.stderr
    assert not (tmp_path / "b").exists()


# -- platform ----------------------------------------------------------------------

def glibc_needed(path):
    """The highest GLIBC_x.y in the file's version needs, as readelf shows them."""
    out = subprocess.run(["readelf", "-V", "-W", path], capture_output=True, text=True,
                         check=True).stdout
    versions = re.findall(r"Name: GLIBC_([0-9.]+)\s", out)
    return max(versions, key=lambda v: tuple(int(x) for x in v.split(".")))


def test_manifest_platform_is_read_from_the_runtime(bundle):
    p = manifest(bundle)["platform"]
    assert p["os"] == "linux" and p["arch"] == platform.machine()
    need = max((glibc_needed(bundle / f) for f in ("bin/nexus_cli", "lib/libonnxruntime.so.1")),
               key=lambda v: tuple(int(x) for x in v.split(".")))
    assert p["min_glibc"] == need
    assert manifest(bundle)["schema_version"] == "1.3"


def edited(nexus, bundle, dst, keys, **platform_values):
    b = copy(bundle, dst)
    rewrite(b, edit=lambda m: m["platform"].update(platform_values))
    assert run(nexus, "sign", b, "--key", f"{keys}.key").returncode == 0
    return b


def test_another_arch_is_refused_by_verify_and_by_the_runtime(nexus, bundle, tmp_path, keys):
    other = "aarch64" if platform.machine() != "aarch64" else "x86_64"
    b = edited(nexus, bundle, tmp_path / "b", keys, arch=other)
    rc, rep = verify(nexus, b, "--pubkey", f"{keys}.pub")
    assert rc == 1 and fails(rep) == {"platform-mismatch"}, rep["findings"]
    r = run(str(b / "bin/nexus_cli"), "info")
    assert r.returncode == 3, (r.returncode, r.stderr)
    assert f"built for linux/{other}" in r.stderr and platform.machine() in r.stderr, r.stderr
    r = run(str(b / "bin/nexus_cli"), "run", "-t", "hello")
    assert r.returncode == 3 and "manifest.json platform" in r.stderr, r.stderr


def test_a_newer_glibc_is_refused_by_the_runtime(nexus, bundle, tmp_path, keys):
    b = edited(nexus, bundle, tmp_path / "b", keys, min_glibc="9.99")
    r = run(str(b / "bin/nexus_cli"), "info")
    host = os.confstr("CS_GNU_LIBC_VERSION").split()[-1]
    assert r.returncode == 3, (r.returncode, r.stderr)
    assert "needs glibc 9.99 or newer" in r.stderr and f"has glibc {host}" in r.stderr, r.stderr
    rc, rep = verify(nexus, b, "--pubkey", f"{keys}.pub")
    assert rc == 1 and "platform-mismatch" in fails(rep)


def test_the_matching_host_runs(bundle):
    r = run(str(bundle / "bin/nexus_cli"), "info")
    assert r.returncode == 0, r.stderr
    assert f"platform    linux/{platform.machine()}, glibc " in r.stdout, r.stdout
    r = run(str(bundle / "bin/nexus_cli"), "info", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["platform"] == manifest(bundle)["platform"]


@pytest.mark.parametrize("bad", [{"arch": "x86 64"}, {"min_glibc": "2"}, {"min_glibc": "2.34x"},
                                 {"os": "windows"}, {"extra": "x"}])
def test_a_malformed_platform_is_no_manifest(nexus, bundle, tmp_path, bad):
    b = copy(bundle, tmp_path / "b")
    rewrite(b, edit=lambda m: m["platform"].update(bad))
    rc, rep = verify(nexus, b)
    assert rc == 1 and "manifest-invalid" in fails(rep), rep["findings"]
    r = run(str(b / "bin/nexus_cli"), "info")
    assert r.returncode == 3 and "platform" in r.stderr, r.stderr


def test_platform_before_1_3_is_an_unknown_key(nexus, bundle, tmp_path):
    b = copy(bundle, tmp_path / "b")
    rewrite(b, edit=lambda m: m.update(schema_version="1.2"))
    rc, rep = verify(nexus, b)
    assert rc == 1 and "manifest-invalid" in fails(rep)
    assert any('unknown key "platform"' in f["message"] for f in rep["findings"])
