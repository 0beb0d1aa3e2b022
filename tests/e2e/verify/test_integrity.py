"""The integrity check: every byte, name, type and mode of the bundle against
its manifest. (Regrouped by check from the red-team files by
scripts/dev/regroup_tests.py.)
"""
import json
import os

import numpy as np
import pytest
from onnx import helper, numpy_helper

import bundle_fixture as bf
from smuggling import fail_codes, floats
from verify_helpers import codes, expect_fail, manifest_obj, verify


@pytest.mark.parametrize("rel", ["src/helpers.py.", "src/helpers.py ", "src/h\u00e9lpers.py",
                                 "README.md\u200b", "src/.py"])
def test_odd_file_names(nexus, bundle, rel):
    bundle.smuggle(rel, "x = 1\n")
    assert fail_codes(nexus, bundle) & {"path-invalid", "manifest-invalid", "unexpected-path"}


@pytest.mark.parametrize("rel", ["src/manifest.json", "config/runtime.yaml.d", "src/empty",
                                 "model/tokenizer/x"])
def test_empty_directory_not_in_manifest(nexus, bundle, rel):
    bundle.unlock()
    bundle.path(rel).mkdir()
    bundle.lock()
    assert "extra-dir" in fail_codes(nexus, bundle)


def test_directory_named_like_the_manifest(nexus, bundle):
    """manifest.json replaced by a directory: nothing to trust."""
    bundle.remove("manifest.json")
    bundle.path("manifest.json").mkdir()
    bundle.lock()
    assert fail_codes(nexus, bundle) & {"manifest-missing", "manifest-invalid"}


def test_socket_file(nexus, bundle):
    import socket
    bundle.unlock()
    cwd = os.getcwd()
    s = socket.socket(socket.AF_UNIX)
    try:
        os.chdir(bundle.path("src"))   # sun_path is short: bind a relative name
        s.bind("sock.py")
    finally:
        os.chdir(cwd)
    bundle.lock()
    try:
        assert "special-file" in fail_codes(nexus, bundle)
    finally:
        s.close()


@pytest.mark.parametrize("size", [2**63 - 1, 2**63, 2**64 - 1, 2**64 + 5, -1, 2**53 + 1])
def test_size_bytes_overflow(nexus, bundle, size):
    m = bundle.manifest_obj()
    m["files"][0]["size_bytes"] = size
    bundle.write_manifest_text(bundle.canonical(m))
    assert fail_codes(nexus, bundle) & {"manifest-invalid", "size-mismatch"}


def test_manifest_is_a_symlink(nexus, bundle, tmp_path):
    text = bundle.path("manifest.json").read_text()
    outside = tmp_path / "m.json"
    outside.write_text(text)
    bundle.remove("manifest.json")
    os.symlink(outside, bundle.path("manifest.json"))
    bundle.lock()
    assert fail_codes(nexus, bundle) & {"symlink", "manifest-missing", "manifest-invalid"}


def test_manifest_is_a_hardlink(nexus, bundle, tmp_path):
    os.link(bundle.path("manifest.json"), tmp_path / "m.json")
    assert "hardlink" in fail_codes(nexus, bundle)


def test_file_swapped_after_it_was_hashed(nexus, bundle):
    """integrity hashes README.md (a base64 blob, as the manifest says);
    the attacker then writes clean text of the same size in place, so the
    allowlist and code checks read that, and can put the blob back after
    verify.  A file whose inode, size or times changed while verify ran is
    not the file that was judged."""
    import base64
    import ctypes
    import os
    import threading
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    # a 64 MiB initializer hashed after README.md holds verify in integrity
    big = numpy_helper.from_array(np.zeros(16 << 20, np.float32), "big")
    g = bf.student_graph(extra_initializers=[big], extra_nodes=[
        helper.make_node("ReduceSum", ["big"], ["bs"], name="bs", keepdims=0),
        helper.make_node("Add", ["logits0", "bs"], ["logits"], name="ba")])
    g.node[3].output[0] = "logits0"
    m = bf.student_model(graph=g)
    bundle.meta["parameters"] = bf.human(bf.parameters(m))
    bundle.write("model/student_model.onnx", m.SerializeToString())
    blob = base64.b64encode(floats(8192).tobytes()).decode()
    evil = "# Spam\n\n" + blob + "\n"
    clean = "# Spam\n\n" + ("lorem ipsum " * len(blob))[:len(blob)] + "\n"
    bundle.smuggle("README.md", evil)
    readme = bundle.path("README.md")
    fd = libc.inotify_init1(0)
    assert fd >= 0 and libc.inotify_add_watch(fd, str(readme).encode(), 0x10) >= 0  # IN_CLOSE_NOWRITE

    def swap():
        os.read(fd, 4096)          # integrity closed README.md after hashing it
        os.chmod(readme, 0o644)
        with open(readme, "r+") as f:
            f.write(clean)
        os.chmod(readme, 0o444)

    t = threading.Thread(target=swap, daemon=True)
    t.start()
    try:
        rc, rep = verify(nexus, bundle)
    finally:
        t.join(5)
        os.close(fd)
    assert rc == 1 and "changed-during-verify" in codes(rep, "FAIL"), rep["findings"]
    assert next(c["status"] for c in rep["checks"] if c["id"] == "integrity") == "FAIL"


def test_flipped_byte(nexus, bundle):
    data = bytearray(bundle.path("model/student_model.onnx").read_bytes())
    data[-5] ^= 1
    bundle.tamper("model/student_model.onnx", bytes(data))
    expect_fail(nexus, bundle, "hash-mismatch")


def test_appended_byte(nexus, bundle):
    bundle.tamper("README.md", bundle.path("README.md").read_bytes() + b"\n")
    expect_fail(nexus, bundle, "size-mismatch")


def test_truncated_file(nexus, bundle):
    bundle.tamper("model/tokenizer/vocab.txt", bundle.path("model/tokenizer/vocab.txt").read_bytes()[:-3])
    expect_fail(nexus, bundle, "size-mismatch")


@pytest.mark.parametrize("rel", ["model/notes.txt", ".hidden/x.txt", "src/.env"])
def test_extra_file(nexus, bundle, rel):
    bundle.tamper(rel, "hello\n")
    expect_fail(nexus, bundle, "extra-file")


def test_extra_empty_hidden_dir(nexus, bundle):
    bundle.unlock()
    bundle.path(".cache").mkdir()
    bundle.lock()
    expect_fail(nexus, bundle, "extra-dir")


def test_missing_file(nexus, bundle):
    bundle.remove("src/utils.py")
    bundle.lock()
    expect_fail(nexus, bundle, "missing-file")


def test_renamed_file(nexus, bundle):
    bundle.unlock()
    bundle.path("src/utils.py").rename(bundle.path("src/util.py"))
    bundle.lock()
    rep = expect_fail(nexus, bundle, "missing-file")
    assert "extra-file" in codes(rep, "FAIL")


def test_edited_manifest_hash(nexus, bundle):
    m = manifest_obj(bundle)
    m["files"][0]["sha256"] = "0" * 64
    bundle.write_manifest_text(bundle.canonical(m))
    expect_fail(nexus, bundle, "hash-mismatch")


def test_edited_manifest_invariant(nexus, bundle):
    m = manifest_obj(bundle)
    m["invariants"]["teacher_free"] = False
    bundle.write_manifest_text(bundle.canonical(m))
    expect_fail(nexus, bundle, "manifest-invariant-false")


def test_manifest_duplicate_keys(nexus, bundle):
    text = bundle.path("manifest.json").read_text()
    text = text.replace('  "bundle_id": "nexus_bundle_v1",\n',
                        '  "bundle_id": "nexus_bundle_v1",\n  "bundle_id": "other",\n', 1)
    bundle.write_manifest_text(text)
    expect_fail(nexus, bundle, "manifest-invalid")


def test_manifest_unknown_key(nexus, bundle):
    m = manifest_obj(bundle)
    m["comment"] = "hi"
    bundle.write_manifest_text(bundle.canonical(m))
    expect_fail(nexus, bundle, "manifest-invalid")


def test_manifest_trailing_data(nexus, bundle):
    bundle.write_manifest_text(bundle.path("manifest.json").read_text() + "{}\n")
    expect_fail(nexus, bundle, "manifest-invalid")


def test_manifest_not_canonical(nexus, bundle):
    bundle.write_manifest_text(json.dumps(manifest_obj(bundle), indent=4, sort_keys=True) + "\n")
    expect_fail(nexus, bundle, "manifest-invalid")


def test_manifest_missing(nexus, bundle):
    bundle.remove("manifest.json")
    bundle.lock()
    expect_fail(nexus, bundle, "manifest-missing")


def test_symlinked_file(nexus, bundle):
    bundle.remove("README.md")
    os.symlink("/etc/hostname", bundle.path("README.md"))
    bundle.lock()
    expect_fail(nexus, bundle, "symlink")


def test_symlinked_dir(nexus, bundle, tmp_path):
    bundle.unlock()
    os.rename(bundle.path("src"), tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", bundle.path("src"))
    bundle.lock()
    rep = expect_fail(nexus, bundle, "symlink")
    assert "missing-file" in codes(rep)


def test_hard_link(nexus, bundle, tmp_path):
    os.link(bundle.path("LICENSE"), tmp_path / "outside")
    expect_fail(nexus, bundle, "hardlink")


def test_fifo_never_blocks(nexus, bundle):
    bundle.remove("LICENSE")
    os.mkfifo(bundle.path("LICENSE"))
    bundle.lock()
    rep = expect_fail(nexus, bundle, "special-file", timeout=20)
    assert "LICENSE" in {f["path"] for f in rep["findings"] if f["code"] == "special-file"}


def test_fifo_under_a_manifest_name_in_src(nexus, bundle):
    bundle.remove("src/utils.py")
    os.mkfifo(bundle.path("src/utils.py"))
    bundle.lock()
    expect_fail(nexus, bundle, "special-file", timeout=20)


def test_sparse_huge_file_rejected_without_reading(nexus, bundle):
    bundle.remove("model/student_model.onnx")
    with open(bundle.path("model/student_model.onnx"), "wb") as f:
        f.truncate(1 << 40)
    bundle.lock()
    expect_fail(nexus, bundle, "size-mismatch", timeout=20)


def test_writable_file(nexus, bundle):
    bundle.chmod("README.md", 0o644)
    expect_fail(nexus, bundle, "writable")


def test_world_writable_dir(nexus, bundle):
    bundle.chmod("src", 0o777)
    expect_fail(nexus, bundle, "writable")


def test_setuid_file(nexus, bundle):
    bundle.chmod("bin/nexus_cli", 0o4555)
    expect_fail(nexus, bundle, "setuid")


def test_case_colliding_names(nexus, bundle):
    bundle.tamper("readme.md", "shadow\n")
    expect_fail(nexus, bundle, "case-collision")
