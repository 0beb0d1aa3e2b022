"""A bundle's life after build (issue 21, item 1): modes recorded in the
manifest, `nexus pack` / `nexus unpack` (deterministic tar, optionally
zstd; hostile archives refused with nothing published), `nexus fix-modes`
after a copy that dropped the modes, and `nexus rm`.

One real bundle is built per module; every test copies what it changes.
"""
import hashlib
import io
import json
import os
import pathlib
import shutil
import stat
import subprocess
import tarfile

import pytest

from conftest import run, sandbox_usable
from test_build import build
from workspace import make_workspace


@pytest.fixture(scope="module")
def bundle(nexus, tmp_path_factory):
    d = tmp_path_factory.mktemp("pack")
    ws = make_workspace(d / "ws")
    r = build(nexus, ws, d / "b")
    assert r.returncode == 0, r.stderr
    return d / "b"


def tree(root):
    """{relative path: (mode, bytes)} of every file, and the directories' modes."""
    root = pathlib.Path(root)
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(root))] = (stat.S_IMODE(st.st_mode),
                                         p.read_bytes() if p.is_file() else None)
    return out


def verify(nexus, b):
    r = run(nexus, "verify", "--json", "--no-sandbox", b)
    assert r.returncode in (0, 1), r.stderr
    return r.returncode, json.loads(r.stdout)


def leftovers(parent, name):
    return [p.name for p in pathlib.Path(parent).iterdir() if p.name.startswith("." + name)]


# -- modes in the manifest --------------------------------------------------------------

def test_manifest_records_modes(bundle):
    m = json.loads((bundle / "manifest.json").read_text())
    assert m["schema_version"] == "1.3"
    modes = {f["path"]: f["mode"] for f in m["files"]}
    assert modes["bin/nexus_cli"] == "0555"
    assert {v for k, v in modes.items() if k != "bin/nexus_cli"} == {"0444"}
    for f in m["files"]:
        assert oct(stat.S_IMODE((bundle / f["path"]).stat().st_mode)) == oct(int(f["mode"], 8))


def test_modes_lost_is_one_finding_naming_fix_modes(nexus, bundle, tmp_path):
    c = tmp_path / "copy"
    r = subprocess.run(["cp", "-r", "--no-preserve=mode", bundle, c])
    assert r.returncode == 0
    assert stat.S_IMODE((c / "bin/nexus_cli").stat().st_mode) & 0o222
    rc, rep = verify(nexus, c)
    assert rc == 1
    bad = [f for f in rep["findings"] if f["severity"] == "FAIL"]
    assert [f["code"] for f in bad] == ["modes-lost"], json.dumps(bad, indent=1)
    assert f"nexus fix-modes {c}" in bad[0]["message"]
    r = run(nexus, "fix-modes", c)
    assert r.returncode == 0, r.stderr
    assert tree(c) == tree(bundle)
    assert verify(nexus, c)[0] == 0


def test_fix_modes_refuses_a_tree_with_more_than_the_bundle(nexus, bundle, tmp_path):
    c = tmp_path / "copy"
    subprocess.run(["cp", "-r", "--no-preserve=mode", bundle, c], check=True)
    (c / "notes.txt").write_text("mine\n")
    before = tree(c)
    r = run(nexus, "fix-modes", c)
    assert r.returncode == 3 and "notes.txt" in r.stderr, r.stderr
    assert tree(c) == before


# -- nexus rm -----------------------------------------------------------------------------

def test_rm_removes_a_bundle_and_nothing_else(nexus, bundle, tmp_path):
    c = tmp_path / "b"
    subprocess.run(["cp", "-a", bundle, c], check=True)
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "data.txt").write_text("not a bundle\n")
    r = run(nexus, "rm", plain)
    assert r.returncode == 3 and "not a bundle" in r.stderr, r.stderr
    assert (plain / "data.txt").exists()
    os.chmod(c, 0o755)
    (c / "extra.bin").write_bytes(b"x")
    os.chmod(c, 0o555)
    r = run(nexus, "rm", c)
    assert r.returncode == 3 and "extra.bin" in r.stderr, r.stderr
    assert (c / "manifest.json").exists()
    os.chmod(c, 0o755)
    (c / "extra.bin").unlink()
    os.chmod(c, 0o555)
    r = run(nexus, "rm", c)
    assert r.returncode == 0, r.stderr
    assert not c.exists() and not leftovers(tmp_path, "b")


# -- pack and unpack ------------------------------------------------------------------------

@pytest.mark.parametrize("compress", [[], ["--zstd"]])
def test_pack_unpack_round_trip(nexus, bundle, tmp_path, compress):
    a, b = tmp_path / "1.nexus", tmp_path / "2.nexus"
    for out in (a, b):
        r = run(nexus, "pack", bundle, "-o", out, *compress)
        assert r.returncode == 0, r.stderr
    assert a.read_bytes() == b.read_bytes()          # deterministic
    m = json.loads((bundle / "manifest.json").read_text())
    with (_open_zstd(a) if compress else tarfile.open(a)) as t:
        members = t.getmembers()
        assert [x.name for x in members] == ["manifest.json"] + [f["path"] for f in m["files"]]
        assert {(x.uid, x.gid, x.uname, x.gname) for x in members} == {(0, 0, "", "")}
        assert {x.mtime for x in members} == {members[0].mtime}
        assert all(x.isreg() for x in members)
    out = tmp_path / "u"
    r = run(nexus, "unpack", a, "-o", out, "--no-sandbox", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema"] == "nexus.unpack.v1" and doc["verify"]["verdict"] != "FAIL"
    assert tree(out) == tree(bundle)
    assert stat.S_IMODE(out.stat().st_mode) == 0o555
    assert verify(nexus, out)[0] == 0
    r = run(nexus, "unpack", a, "-o", out, "--no-sandbox")
    assert r.returncode == 2 and "exists" in r.stderr, r.stderr


def test_unpack_runs_the_functional_check_in_the_sandbox(nexus, bundle, tmp_path):
    """Without --no-sandbox, unpack's verify runs the bundle in the sandbox,
    which binds it by path: it must be given the stage's, since the output
    path does not exist yet (it failed with "cannot resolve" on every
    unpack and pull)."""
    if not (sandbox_usable("bwrap") or sandbox_usable("landlock")):
        pytest.skip("no sandbox backend here")
    a = tmp_path / "b.nexus"
    assert run(nexus, "pack", bundle, "-o", a).returncode == 0
    out = tmp_path / "out dir ü"
    r = run(nexus, "unpack", a, "-o", out, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    checks = {c["id"]: c["status"] for c in doc["verify"]["checks"]}
    assert checks["functional"] == "PASS", doc["verify"]
    assert doc["verify"]["bundle"] == str(out)      # the report names the output
    assert tree(out) == tree(bundle)


def _open_zstd(path):
    data = subprocess.run(["zstd", "-dc", path], capture_output=True, check=True).stdout
    return tarfile.open(fileobj=io.BytesIO(data), mode="r:")


def test_pack_refuses_a_bundle_that_does_not_match(nexus, bundle, tmp_path):
    c = tmp_path / "c"
    subprocess.run(["cp", "-r", bundle, c], check=True)
    (c / "README.md").chmod(0o644)
    (c / "README.md").write_text("changed\n")
    r = run(nexus, "pack", c, "-o", tmp_path / "c.nexus")
    assert r.returncode == 1 and "README.md" in r.stderr, r.stderr
    assert not (tmp_path / "c.nexus").exists() and not leftovers(tmp_path, "c.nexus")


# -- hostile archives: refused, nothing published ----------------------------------------------

def _members(bundle):
    m = (bundle / "manifest.json").read_bytes()
    files = [f["path"] for f in json.loads(m)["files"]]
    return [("manifest.json", m)] + [(p, (bundle / p).read_bytes()) for p in files]


def _tar(path, members, tweak=None):
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o444
            if tweak:
                info, data = tweak(info, data)
            t.addfile(info, io.BytesIO(data) if data is not None else None)


def _symlink(info, data):
    if info.name == "README.md":
        info.type, info.linkname, info.size = tarfile.SYMTYPE, "/etc/passwd", 0
        return info, None
    return info, data


def _hardlink(info, data):
    if info.name == "README.md":
        info.type, info.linkname, info.size = tarfile.LNKTYPE, "manifest.json", 0
        return info, None
    return info, data


def _rename(new):
    def tweak(info, data):
        if info.name == "README.md":
            info.name = new
        return info, data
    return tweak


def _bigger(info, data):
    if info.name == "README.md":
        data = data + b"more"
        info.size = len(data)
    return info, data


HOSTILE = {
    "symlink": (_symlink, "symbolic link"),
    "hardlink": (_hardlink, "hard link"),
    "dotdot": (_rename("../README.md"), "'..'"),
    "absolute": (_rename("/tmp/README.md"), "absolute"),
    "unlisted": (_rename("src/extra.py"), "not listed"),
    "bigger": (_bigger, "declares"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_is_refused(nexus, bundle, tmp_path, case):
    tweak, words = HOSTILE[case]
    a = tmp_path / "a.nexus"
    _tar(a, _members(bundle), tweak)
    r = run(nexus, "unpack", a, "-o", tmp_path / "out", "--no-sandbox")
    assert r.returncode in (1, 3) and words in r.stderr, r.stderr
    assert not (tmp_path / "out").exists() and not leftovers(tmp_path, "out")


def test_duplicate_member_is_refused(nexus, bundle, tmp_path):
    a = tmp_path / "a.nexus"
    ms = _members(bundle)
    _tar(a, ms + [m for m in ms if m[0] == "README.md"])
    r = run(nexus, "unpack", a, "-o", tmp_path / "out", "--no-sandbox")
    assert r.returncode == 3 and "twice" in r.stderr, r.stderr
    assert not (tmp_path / "out").exists() and not leftovers(tmp_path, "out")


def test_truncated_archive_is_refused(nexus, bundle, tmp_path):
    a = tmp_path / "a.nexus"
    assert run(nexus, "pack", bundle, "-o", a).returncode == 0
    data = a.read_bytes()
    for cut in (len(data) // 2, len(data) - 4096):
        t = tmp_path / f"t{cut}.nexus"
        t.write_bytes(data[:cut])
        r = run(nexus, "unpack", t, "-o", tmp_path / "out", "--no-sandbox")
        assert r.returncode == 3 and "nothing was unpacked" in r.stderr, r.stderr
        assert not (tmp_path / "out").exists() and not leftovers(tmp_path, "out")


def test_decompression_bomb_ratio_is_refused(nexus, bundle, tmp_path):
    """A manifest declaring far more than the archive could honestly hold
    is refused before anything is written (the members never need to exist)."""
    m = json.loads((bundle / "manifest.json").read_text())
    for f in m["files"]:
        if f["path"] == "README.md":
            f["size_bytes"] = 10 << 30
    mb = (json.dumps(m, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
    a = tmp_path / "a.nexus"
    _tar(a, [("manifest.json", mb)])
    r = run(nexus, "unpack", a, "-o", tmp_path / "out", "--no-sandbox")
    assert r.returncode == 3 and "times its size" in r.stderr, r.stderr
    r = run(nexus, "unpack", a, "-o", tmp_path / "out", "--no-sandbox", "--max-size", "1GiB")
    assert r.returncode == 3 and "--max-size" in r.stderr, r.stderr
    assert not (tmp_path / "out").exists() and not leftovers(tmp_path, "out")


# -- inspect BUNDLE and diff (issue 21, item 2) ----------------------------------------------

def _student_with_one_weight_changed():
    import onnx
    from onnx import numpy_helper
    from workspace import student_onnx
    m = onnx.load_from_string(student_onnx())
    for i, t in enumerate(m.graph.initializer):
        if t.name == "classifier.weight":
            a = numpy_helper.to_array(t).copy()
            a[0, 0] += 1.0
            m.graph.initializer[i].CopyFrom(numpy_helper.from_array(a, t.name))
    return m.SerializeToString()


def test_inspect_bundle(nexus, bundle):
    r = run(nexus, "inspect", bundle)
    assert r.returncode == 0, r.stderr
    for words in ("manifest schema 1.3", "bin/nexus_cli", "signature  unsigned", "platform   linux/",
                  "policy     max_model_bytes", "runtime    nexus", "input_ids"):
        assert words in r.stdout, r.stdout
    r = run(nexus, "inspect", "--json", bundle)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema"] == "nexus.inspect-bundle.v1"
    m = json.loads((bundle / "manifest.json").read_text())
    assert [f["path"] for f in doc["files"]] == [f["path"] for f in m["files"]]
    assert doc["signature"] == {"status": "unsigned", "key_id": "", "checked": False}
    assert doc["policy"] == m["policy"] and doc["runtime"] == m["runtime"]
    assert doc["platform"] == m["platform"]
    assert doc["model"]["parameters"] > 0


def test_inspect_signed_bundle_names_and_checks_the_key(nexus, bundle, tmp_path):
    keys = tmp_path / "k"
    assert run(nexus, "keygen", "-o", keys).returncode == 0
    c = tmp_path / "c"
    subprocess.run(["cp", "-a", bundle, c], check=True)
    assert run(nexus, "sign", c, "--key", f"{keys}.key").returncode == 0
    doc = json.loads(run(nexus, "inspect", "--json", c).stdout)
    assert doc["signature"]["status"] == "unknown-key" and len(doc["signature"]["key_id"]) == 16
    doc = json.loads(run(nexus, "inspect", "--json", c, "--pubkey", f"{keys}.pub").stdout)
    assert doc["signature"]["status"] == "valid" and doc["signature"]["checked"]


def test_diff_names_the_changed_tensor(nexus, bundle, tmp_path):
    ws = make_workspace(tmp_path / "ws2", student=_student_with_one_weight_changed())
    r = build(nexus, ws, tmp_path / "b2")
    assert r.returncode == 0, r.stderr
    r = run(nexus, "diff", bundle, bundle)
    assert r.returncode == 0 and "same bundle" in r.stdout, r.stdout + r.stderr
    r = run(nexus, "diff", bundle, tmp_path / "b2")
    assert r.returncode == 1, r.stderr
    assert "tensor  ~ classifier.weight: contents" in r.stdout, r.stdout
    assert "embeddings.weight" not in r.stdout
    assert "file    ~ model/student_model.onnx" in r.stdout
    r = run(nexus, "diff", "--json", bundle, tmp_path / "b2")
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    assert doc["schema"] == "nexus.diff.v1" and not doc["same"]
    assert [t["name"] for t in doc["tensors"]["changed"]] == ["classifier.weight"]
    assert doc["tensors"]["changed"][0]["differs"] == ["contents"]
    assert {f["path"] for f in doc["files"]["changed"]} >= {"model/student_model.onnx"}
    r = run(nexus, "diff", bundle, tmp_path / "nope")
    assert r.returncode >= 2
