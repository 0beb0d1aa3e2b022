"""`nexus verify` against a bundle attacked one way at a time.

Each test starts from a clean hand-made bundle (bundle_fixture.py), applies
one attack, and asserts both the verdict and the finding code that names
the attack.  Attacks that re-generate the manifest (Bundle.smuggle) prove
that the allowlist/code/weights/size checks catch what integrity cannot.
"""
import base64
import gzip
import io
import json
import os
import pickle
import struct
import tarfile
import time
import zipfile

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import bundle_fixture as bf
from conftest import RUNTIME_DIR, run


@pytest.fixture(scope="session")
def runtime(tmp_path_factory):
    return bf.make_runtime(tmp_path_factory.mktemp("runtime") / "nexus")


@pytest.fixture
def bundle(tmp_path, runtime):
    b = bf.Bundle(tmp_path / "nexus_bundle_v1", runtime)
    yield b
    b.unlock()


def verify(nexus, b, *args, timeout=60, sandbox=False, teacher=True):
    """The fixture bundle has no runnable model: TRV-5 is tested on real
    bundles (test_sandbox.py, test_build.py); here it is off unless asked.
    Like a deployment gate, it passes the teacher (an unrelated model), so
    the student is fingerprinted (no no-teacher-fingerprint warning)."""
    env = dict(os.environ, NEXUS_RUNTIME_DIR=str(b.runtime_dir))
    if not sandbox and "--no-sandbox" not in args:
        args = ("--no-sandbox",) + args
    if teacher and "--teacher" not in args:
        args = ("--teacher", b.teacher) + args
    r = run(nexus, "verify", "--json", *args, b.root, env=env, timeout=timeout)
    assert r.returncode in (0, 1), r.stderr
    rep = json.loads(r.stdout)
    assert rep["schema"] == "nexus.verify.v1"
    return r.returncode, rep


def codes(rep, severity=None):
    return {f["code"] for f in rep["findings"] if severity in (None, f["severity"])}


def expect_fail(nexus, b, code, *args, timeout=60):
    rc, rep = verify(nexus, b, *args, timeout=timeout)
    assert rc == 1 and rep["verdict"] == "FAIL", rep
    assert code in codes(rep, "FAIL"), json.dumps(rep["findings"], indent=1)
    return rep


def check_status(rep, check):
    return next(c["status"] for c in rep["checks"] if c["id"] == check)


# -- the clean bundle ---------------------------------------------------------

def test_clean_bundle_passes_with_only_expected_warnings(nexus, bundle):
    rc, rep = verify(nexus, bundle)
    assert rc == 0
    assert rep["verdict"] == "WARN"
    assert codes(rep, "FAIL") == set()
    assert codes(rep, "WARN") == {"unsigned"}
    assert [c["id"] for c in rep["checks"]] == [
        "integrity", "signature", "policy", "allowlist", "code", "budget", "weights", "size",
        "functional"]
    # a schema 1.0 manifest records no policy: verify's own limits apply
    assert "policy-missing" in codes(rep, "INFO")
    assert check_status(rep, "functional") == "SKIP"
    for c in ("integrity", "policy", "allowlist", "code", "weights", "size"):
        assert check_status(rep, c) == "PASS", rep


def test_no_sandbox_is_a_plain_skip_and_strict_turns_warn_into_exit_1(nexus, bundle):
    rc, rep = verify(nexus, bundle, "--no-sandbox")
    assert rc == 0 and codes(rep, "WARN") == {"unsigned"}
    rc, rep = verify(nexus, bundle, "--no-sandbox", "--strict")
    assert rc == 1 and rep["verdict"] == "WARN"
    rc, rep = verify(nexus, bundle, "--require-signature", "--no-sandbox")
    assert rc == 1 and "unsigned" in codes(rep, "FAIL")


def test_human_report_and_exit_codes(nexus, bundle, tmp_path):
    env = dict(os.environ, NEXUS_RUNTIME_DIR=str(bundle.runtime_dir))
    r = run(nexus, "verify", "--no-sandbox", bundle.root, env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("PASS  integrity")
    assert any(l.startswith("WARN signature unsigned manifest.json: ") for l in lines)
    assert lines[-1] == "verdict: WARN"
    assert run(nexus, "verify", tmp_path / "nope").returncode == 3
    assert run(nexus, "verify").returncode == 2
    assert run(nexus, "verify", bundle.root, "--max-model-bytes", "lots").returncode == 2


@pytest.mark.parametrize("opt", ["--max-model-bytes", "--max-leak-bytes"])
@pytest.mark.parametrize("size", ["nan", "inf", "nanGiB", "-0", "1e3", "0x10", "1.5B"])
def test_size_options_use_the_size_grammar(nexus, bundle, opt, size):
    """Sizes on the command line follow nexus.yaml's grammar (nx_parse_size):
    strtod accepted NaN, which was then cast to an integer (undefined)."""
    r = run(nexus, "verify", "--no-sandbox", bundle.root, opt, size)
    assert r.returncode == 2, (size, r.returncode, r.stderr)
    assert f"'{size}' is not a size" in r.stderr


# -- tampering after the build -------------------------------------------------

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


def manifest_obj(b):
    return json.loads(b.path("manifest.json").read_text())


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


# -- filesystem tricks ----------------------------------------------------------

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


# -- smuggling with a consistent manifest ----------------------------------------

def torch_zip():
    import torch
    buf = io.BytesIO()
    torch.save({"layer.weight": torch.randn(16, 16)}, buf)
    return buf.getvalue()


def npy():
    buf = io.BytesIO()
    np.save(buf, np.arange(64, dtype=np.float32))
    return buf.getvalue()


def safetensors():
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    return struct.pack("<Q", len(header)) + header + np.ones(4, np.float32).tobytes()


def zipped():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("weights.txt", "1 2 3")
    return buf.getvalue()


def tarred():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        data = b"1 2 3"
        info = tarfile.TarInfo("weights.txt")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


WEIGHTS = {
    "pytorch-zip": torch_zip,
    "safetensors": safetensors,
    "numpy": npy,
    "hdf5": lambda: b"\x89HDF\r\n\x1a\n" + bytes(512),
    "gguf": lambda: b"GGUF\x03\x00\x00\x00" + bytes(64),
}
for _p in range(6):
    WEIGHTS[f"pickle-{_p}"] = (lambda p: lambda: pickle.dumps(
        {"layer.weight": [0.5] * 16, "step": 3}, protocol=p))(_p)


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


def blob():
    return base64.b64encode(np.random.default_rng(2).bytes(8192)).decode()


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


# -- bin/ and lib/ are the trusted runtime -----------------------------------------

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


# -- forbidden terms in code and config --------------------------------------------

@pytest.mark.parametrize("src,code", [
    ('NAME = "teacher"\n', "term-in-string"),
    ("teacher_logits = 1\n", "term-in-code"),
    ("import teacher_model\n", "term-in-code"),
    ("from training_modules import distillation\n", "term-in-code"),
    ("def f(soft_targets):\n    return soft_targets\n", "term-in-code"),
    ('import importlib\nm = importlib.import_module("te" + "acher_model")\n', "dynamic-import"),
    ("name = 'x'\nm = __import__(name)\n", "dynamic-import"),
])
def test_python_terms_fail(nexus, bundle, src, code):
    bundle.smuggle("src/utils.py", src)
    expect_fail(nexus, bundle, code)


def test_python_comment_and_docstring_warn(nexus, bundle):
    bundle.smuggle("src/utils.py", '"""No teacher here."""\n# the teacher was removed\nx = 1\n')
    rc, rep = verify(nexus, bundle)
    assert rc == 0 and rep["verdict"] == "WARN", rep
    assert {"term-in-comment", "term-in-docstring"} <= codes(rep, "WARN")
    assert codes(rep, "FAIL") == set()


@pytest.mark.parametrize("yaml,code", [
    ("teacher_path: /models/t.onnx\n", "term-in-key"),
    ("mode: distillation\n", "term-in-value"),
])
def test_yaml_terms_fail(nexus, bundle, yaml, code):
    bundle.smuggle("config/runtime.yaml", bf.RUNTIME_YAML + yaml)
    expect_fail(nexus, bundle, code)


def test_yaml_comment_warns(nexus, bundle):
    bundle.smuggle("config/runtime.yaml", bf.RUNTIME_YAML + "# tuned after distillation\n")
    rc, rep = verify(nexus, bundle)
    assert rc == 0 and "term-in-comment" in codes(rep, "WARN"), rep


def test_tokenizer_config_terms_fail(nexus, bundle):
    tok = json.loads(bundle.path("model/tokenizer/tokenizer.json").read_text())
    tok["normalizer"]["source"] = "teacher tokenizer"
    bundle.smuggle("model/tokenizer/tokenizer.json", json.dumps(tok))
    expect_fail(nexus, bundle, "term-in-value")


def test_vocabulary_containing_teacher_passes(nexus, bundle):
    tok = json.loads(bundle.path("model/tokenizer/tokenizer.json").read_text())
    tok["model"]["vocab"]["teacher"] = len(tok["model"]["vocab"])
    tok["model"]["vocab"]["distillation"] = len(tok["model"]["vocab"])
    bundle.write("model/tokenizer/tokenizer.json", json.dumps(tok))
    bundle.smuggle("model/tokenizer/vocab.txt", "\n".join(bf.VOCAB + ["teacher", "##ship"]) + "\n")
    rc, rep = verify(nexus, bundle, "--no-sandbox")
    assert rc == 0, rep["findings"]
    assert check_status(rep, "code") == "PASS", rep["findings"]


def test_overlong_vocab_entry_is_smuggling(nexus, bundle):
    # not a run (a run - a head and one short unit repeated - carries only
    # its length, and passes: test_tok_budget.py)
    entry = "".join(f"x{i}!" for i in range(150))
    bundle.smuggle("model/tokenizer/vocab.txt", "\n".join(bf.VOCAB + [entry]) + "\n")
    expect_fail(nexus, bundle, "vocab-entry-suspicious")


def test_readme_mention_warns(nexus, bundle):
    bundle.smuggle("README.md", "# Model\n\nDistilled from a larger teacher.\n")
    rc, rep = verify(nexus, bundle)
    assert rc == 0 and "term-in-docs" in codes(rep, "WARN"), rep


def test_extra_forbidden_term(nexus, bundle):
    bundle.smuggle("src/utils.py", "BIG_MODEL = 'bert-large'\n")
    expect_fail(nexus, bundle, "term-in-string", "--forbidden-term", "bert-large")


# -- the ONNX model -------------------------------------------------------------

def with_model(b, model):
    b.model = model
    b.smuggle("model/student_model.onnx", model.SerializeToString())


@pytest.mark.parametrize("make", [
    lambda: bf.student_model(metadata={"source": "Teacher-v2"}),
    lambda: bf.student_model(doc_string="distilled from the teacher"),
    lambda: bf.student_model(producer="teacher-exporter"),
    lambda: bf.student_model(graph_name="teacher_graph"),
], ids=["metadata", "doc-string", "producer", "graph-name"])
def test_onnx_teacher_strings(nexus, bundle, make):
    with_model(bundle, make())
    expect_fail(nexus, bundle, "onnx-teacher-reference")


def test_onnx_teacher_node_and_initializer_names(nexus, bundle):
    m = bf.student_model()
    m.graph.node[2].name = "teacher_head"
    m.graph.initializer[1].name = "teacher.W"
    m.graph.node[2].input[1] = "teacher.W"
    with_model(bundle, m)
    rep = expect_fail(nexus, bundle, "onnx-teacher-reference")
    assert len([f for f in rep["findings"] if f["code"] == "onnx-teacher-reference"]) >= 2


def test_onnx_unreferenced_initializer(nexus, bundle):
    spare = numpy_helper.from_array(np.ones((4, 4), np.float32), "spare")
    with_model(bundle, bf.student_model(extra_initializers=[spare]))
    expect_fail(nexus, bundle, "onnx-unreferenced-initializer")


def test_onnx_teacher_subgraph_in_if_branch(nexus, bundle):
    def branch(name):
        return helper.make_graph(
            [helper.make_node("Identity", ["logits"], ["o_" + name], name=name)], name + "_g", [],
            [helper.make_tensor_value_info("o_" + name, TensorProto.FLOAT, [1, 2])])
    cond = numpy_helper.from_array(np.array(True), "cond")
    node = helper.make_node("If", ["cond"], ["if_out"], name="maybe",
                            then_branch=branch("teacher_block"), else_branch=branch("plain"))
    with_model(bundle, bf.student_model(extra_initializers=[cond], extra_nodes=[node]))
    rep = expect_fail(nexus, bundle, "onnx-teacher-reference")
    assert any("teacher_block" in f["message"] for f in rep["findings"])


def test_onnx_constant_attribute(nexus, bundle):
    const = helper.make_node("Constant", [], ["c"], name="k",
                             value=numpy_helper.from_array(np.ones(2, np.float32), "teacher_logit_scale"))
    with_model(bundle, bf.student_model(extra_nodes=[const]))
    expect_fail(nexus, bundle, "onnx-teacher-reference")


def test_onnx_string_attribute(nexus, bundle):
    node = helper.make_node("Identity", ["logits"], ["x"], name="tag", note="soft_targets")
    with_model(bundle, bf.student_model(extra_nodes=[node]))
    expect_fail(nexus, bundle, "onnx-teacher-reference")


def test_onnx_training_info(nexus, bundle):
    m = bf.student_model()
    ti = m.training_info.add()
    ti.algorithm.CopyFrom(helper.make_graph([], "algo", [], []))
    with_model(bundle, m)
    expect_fail(nexus, bundle, "onnx-training-info")


def test_onnx_training_op_domain(nexus, bundle):
    node = helper.make_node("Gradient", ["logits"], ["g"], name="grad",
                            domain="ai.onnx.preview.training", xs=["W"], y="logits")
    m = bf.student_model(extra_nodes=[node],
                         opsets=[helper.make_opsetid("", 13),
                                 helper.make_opsetid("ai.onnx.preview.training", 1)])
    with_model(bundle, m)
    expect_fail(nexus, bundle, "onnx-training-op")


@pytest.mark.parametrize("location", ["../../etc/passwd", "/etc/passwd", "missing.data"])
def test_onnx_external_data_outside(nexus, bundle, location):
    m = bf.student_model()
    w = m.graph.initializer[1]
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", "64")):
        e = w.external_data.add()
        e.key, e.value = k, v
    with_model(bundle, m)
    expect_fail(nexus, bundle, "onnx-external-outside")


def test_onnx_external_data_inside_is_fine(nexus, bundle):
    m = bf.student_model()
    w = m.graph.initializer[1]
    data = w.raw_data
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "student_model.onnx.data"), ("offset", "0"), ("length", str(len(data)))):
        e = w.external_data.add()
        e.key, e.value = k, v
    bundle.write("model/student_model.onnx.data", data)
    with_model(bundle, m)
    rc, rep = verify(nexus, bundle, "--no-sandbox")
    assert rc == 0, rep["findings"]


@pytest.mark.parametrize("tail", [b"\xfa\x07\x03abc", b"\x00\x00\x00"], ids=["unknown-field", "garbage"])
def test_onnx_unknown_fields_or_trailing_bytes(nexus, bundle, tail):
    bundle.smuggle("model/student_model.onnx", bundle.model.SerializeToString() + tail)
    rc, rep = verify(nexus, bundle)
    assert rc == 1
    assert codes(rep, "FAIL") & {"onnx-unknown-fields", "onnx-invalid"}, rep["findings"]


def test_model_not_onnx(nexus, bundle):
    bundle.smuggle("model/student_model.onnx", torch_zip())
    expect_fail(nexus, bundle, "onnx-invalid")


def test_model_larger_than_its_parameters(nexus, bundle):
    # names each under onnx-string-blob's 4 KiB (free text such as metadata
    # is capped in all by the weights check too): only the size names them
    g = bf.student_graph()
    g.value_info.extend(helper.make_tensor_value_info(f"{i:04d}" + "x" * 4000, TensorProto.FLOAT,
                                                      [1]) for i in range(256))
    with_model(bundle, bf.student_model(graph=g))
    rep = expect_fail(nexus, bundle, "model-size-unexplained")
    # value_info entries for values no node computes are not canonical either
    assert codes(rep, "FAIL") == {"model-size-unexplained", "onnx-not-canonical"}


def test_metadata_larger_than_free_text_allows(nexus, bundle):
    with_model(bundle, bf.student_model(metadata={f"k{i}": "x" * 4000 for i in range(256)}))
    expect_fail(nexus, bundle, "onnx-string-blob")


def test_model_over_threshold(nexus, bundle):
    expect_fail(nexus, bundle, "model-too-large", "--max-model-bytes", "1000")
    rc, _ = verify(nexus, bundle, "--max-model-bytes", "1MiB")
    assert rc == 0


# -- teacher fingerprinting --------------------------------------------------------

def test_copied_teacher_tensor(nexus, bundle, tmp_path):
    teacher = tmp_path / "teacher.onnx"
    teacher.write_bytes(bf.student_model(seed=0, graph_name="big").SerializeToString())
    expect_fail(nexus, bundle, "teacher-tensor-copied", "--teacher", teacher)


def test_independent_teacher_is_fine(nexus, bundle, tmp_path):
    teacher = tmp_path / "teacher.onnx"
    teacher.write_bytes(bf.student_model(seed=7, graph_name="big").SerializeToString())
    rc, rep = verify(nexus, bundle, "--teacher", teacher)
    assert rc == 0 and "teacher-tensor-copied" not in codes(rep), rep["findings"]


def test_unreadable_teacher_is_an_environment_error(nexus, bundle, tmp_path):
    env = dict(os.environ, NEXUS_RUNTIME_DIR=str(bundle.runtime_dir))
    r = run(nexus, "verify", "--teacher", tmp_path / "none.onnx", bundle.root, env=env)
    assert r.returncode == 3


# -- with the real runtime -----------------------------------------------------

def test_real_runtime_bundle(nexus, tmp_path):
    b = bf.Bundle(tmp_path / "real", RUNTIME_DIR)
    # the runtime is found from the binary (or $NEXUS_RUNTIME_DIR under e2e-asan)
    r = run(nexus, "verify", "--json", "--no-sandbox", "--teacher", b.teacher, b.root)
    rep = json.loads(r.stdout)
    assert r.returncode == 0, rep["findings"]
    assert codes(rep, "WARN") == {"unsigned"}
    b.unlock()


# -- the CI entry point the spec names ---------------------------------------------



def test_ci_wrapper_exit_status_and_summary(nexus, bundle):
    wrapper = __import__("pathlib").Path(__file__).resolve().parents[1] / "verify_teacher_free.py"
    env = dict(os.environ, NEXUS=nexus, NEXUS_RUNTIME_DIR=str(bundle.runtime_dir))
    r = run("/usr/bin/python3", wrapper, bundle.root, "--no-sandbox", env=env)
    assert r.returncode == 0, r.stderr
    assert "teacher-free verdict: WARN" in r.stdout
    bundle.smuggle("src/helpers.py", npy())
    r = run("/usr/bin/python3", wrapper, bundle.root, env=env)
    assert r.returncode == 1
    assert "FAIL allowlist weights-content src/helpers.py" in r.stdout


# -- signatures ---------------------------------------------------------------------

def sign(nexus, b, tmp_path, name="release"):
    prefix = tmp_path / name
    if not (tmp_path / f"{name}.key").exists():
        r = run(nexus, "keygen", "-o", prefix)
        assert r.returncode == 0, r.stderr
    r = run(nexus, "sign", b.root, "--key", tmp_path / f"{name}.key")
    assert r.returncode == 0, r.stderr
    return tmp_path / f"{name}.pub"


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


# -- nothing of a tampered bundle is executed (#15 item 8) ---------------------

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
