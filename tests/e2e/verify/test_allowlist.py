"""The allowlist check (TRV-1): only the bundle layout, file types by content,
and the trusted runtime. (Regrouped by check from the red-team files by
scripts/dev/regroup_tests.py.)
"""
import gzip
import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest

import bundle_fixture as bf
from conftest import run
from smuggling import floats
from verify_helpers import WEIGHTS, blob, check_status, expect_fail, npy, tarred, zipped


def test_npy_after_text_header(nexus, bundle):
    buf = io.BytesIO()
    np.save(buf, floats(64))
    bundle.smuggle("src/helpers.py", b"# data\n" * 10 + buf.getvalue())
    expect_fail(nexus, bundle, "embedded-magic")


def test_zip_after_text(nexus, bundle):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("w.bin", floats(64).tobytes())
    bundle.smuggle("LICENSE", b"MIT License\n" * 50 + buf.getvalue())
    expect_fail(nexus, bundle, "embedded-magic")


def test_pickle_after_text(nexus, bundle):
    bundle.smuggle("README.md", b"# readme\n" * 50 + pickle.dumps({"w": [0.5] * 16}, protocol=4))
    expect_fail(nexus, bundle, "embedded-magic")


def test_utf16_readme(nexus, bundle):
    bundle.smuggle("README.md", "# Spam classifier\n".encode("utf-16"))
    expect_fail(nexus, bundle, "binary-content")


@pytest.mark.parametrize("kind", sorted(WEIGHTS))
def test_teacher_weights_under_an_innocent_name(nexus, bundle, kind):
    bundle.smuggle("src/helpers.py", WEIGHTS[kind]())
    rep = expect_fail(nexus, bundle, "weights-content")
    assert check_status(rep, "integrity") == "PASS"


@pytest.mark.parametrize("make", [zipped, tarred, lambda: gzip.compress(b"weights" * 100)])
def test_archives(nexus, bundle, make):
    bundle.smuggle("config/selftest.json", make())
    expect_fail(nexus, bundle, "archive-content")


def test_pyc_and_pycache(nexus, bundle):
    pyc = b"\xa7\r\r\n" + bytes(12) + b"\xe3" + bytes(40)
    bundle.smuggle("src/__pycache__/utils.cpython-311.pyc", pyc)
    expect_fail(nexus, bundle, "bytecode")


def test_pyc_content_under_a_py_name(nexus, bundle):
    bundle.smuggle("src/fast.py", b"\x6f\x0d\r\n" + bytes(12) + b"\xe3" + bytes(40))
    expect_fail(nexus, bundle, "bytecode")


def test_weights_appended_to_a_text_file(nexus, bundle):
    bundle.smuggle("README.md", bundle.path("README.md").read_bytes() + npy())
    expect_fail(nexus, bundle, "embedded-magic")


def test_raw_floats_appended_to_source(nexus, bundle):
    floats = np.random.default_rng(1).standard_normal(256).astype(np.float32).tobytes()
    bundle.smuggle("src/utils.py", bundle.path("src/utils.py").read_bytes() + b"#" + floats)
    expect_fail(nexus, bundle, "binary-content")


def test_base64_blob_in_runtime_yaml(nexus, bundle):
    bundle.smuggle("config/runtime.yaml", bf.RUNTIME_YAML + f"labels_cache: {blob()}\n")
    expect_fail(nexus, bundle, "base64-blob")


def test_base64_blob_in_tokenizer(nexus, bundle):
    tok = json.loads(bundle.path("model/tokenizer/tokenizer.json").read_text())
    tok["normalizer"]["table"] = blob()
    bundle.smuggle("model/tokenizer/tokenizer.json", json.dumps(tok))
    expect_fail(nexus, bundle, "base64-blob")


def test_elf_outside_lib(nexus, bundle):
    bundle.smuggle("src/native.py", bundle.path("bin/nexus_cli").read_bytes())
    expect_fail(nexus, bundle, "elf-outside-lib")


@pytest.mark.parametrize("rel", ["model/teacher_notes.txt", "config/Checkpoint.yaml",
                                 "src/optimizer.py", "TEACHER/x.txt"])
def test_forbidden_names(nexus, bundle, rel):
    bundle.smuggle(rel, "x = 1\n")
    expect_fail(nexus, bundle, "forbidden-name")


def test_unexpected_path(nexus, bundle):
    bundle.smuggle("model/extra.txt", "notes\n")
    expect_fail(nexus, bundle, "unexpected-path")


def test_modified_runtime_binary(nexus, bundle):
    bundle.smuggle("bin/nexus_cli", bundle.path("bin/nexus_cli").read_bytes() + b"\0")
    expect_fail(nexus, bundle, "runtime-mismatch")


def test_extra_library(nexus, bundle):
    bundle.smuggle("lib/libextra.so", b"\x7fELF" + bytes(60))
    expect_fail(nexus, bundle, "runtime-mismatch")


def test_missing_runtime_library(nexus, bundle):
    bundle.remove("lib/libonnxruntime.so.1")
    bundle.regen_manifest()
    expect_fail(nexus, bundle, "runtime-missing")


def test_trusted_list_instead_of_runtime_dir(nexus, bundle, tmp_path):
    import hashlib
    lines = [f"{hashlib.sha256(bundle.path(r).read_bytes()).hexdigest()}  {r}"
             for r in ("bin/nexus_cli", "lib/libonnxruntime.so.1")]
    (tmp_path / "trusted.txt").write_text("\n".join(lines) + "\n")
    env = dict(os.environ, NEXUS_RUNTIME_DIR=str(tmp_path / "no-such-dir"))
    r = run(nexus, "verify", "--json", "--no-sandbox", "--trusted-list", tmp_path / "trusted.txt",
            bundle.root, env=env)
    rep = json.loads(r.stdout)
    assert check_status(rep, "allowlist") == "PASS", rep["findings"]
