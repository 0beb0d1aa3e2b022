"""Red-team attacks on `nexus verify` and `nexus build`.

Each test is one attack an insider (or a tamperer) could try against the
claims of docs/TRV.md, written after reading the checks' code.  Attacks
that re-generate the manifest (Bundle.smuggle) get past integrity by
construction, so what is asserted is that another check names them.
"""
import base64
import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import bundle_fixture as bf
from conftest import run, sandbox_usable
from test_verify_adversarial import (bundle, check_status, codes, expect_fail,  # noqa: F401
                                     runtime, verify, with_model)


def floats(n, seed=7):
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32)


# -- weights hidden in text ------------------------------------------------------

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


def test_hex_blob_in_python_string(nexus, bundle):
    bundle.smuggle("src/helpers.py", f'W = "{floats(4096).tobytes().hex()}"\n')
    expect_fail(nexus, bundle, "base64-blob")


def test_base64_in_license(nexus, bundle):
    bundle.smuggle("LICENSE", "MIT\n" + base64.b64encode(floats(4096).tobytes()).decode() + "\n")
    expect_fail(nexus, bundle, "base64-blob")


# The dense encodings below carry 16 KiB of float32 each: the size of a
# teacher layer, far more than any legitimate source or config needs as a
# literal.
def py_float_list():
    return "W = [" + ", ".join(f"{x:.6g}" for x in floats(4096)) + "]\n"


def py_bytes_literal():
    return "W = b'" + "".join(f"\\x{c:02x}" for c in floats(4096).tobytes()) + "'\n"


def py_wrapped_base64():
    b = base64.encodebytes(floats(4096).tobytes()).decode()
    return 'W = """\n' + b + '"""\n'


def py_spaced_hex():
    return 'W = """' + " ".join(f"{c:02x}" for c in floats(4096).tobytes()) + '"""\n'


def py_int_tuple():
    return "W = (" + ",".join(str(c) for c in floats(4096).tobytes()) + ")\n"


@pytest.mark.parametrize("make", [py_float_list, py_bytes_literal, py_wrapped_base64,
                                  py_spaced_hex, py_int_tuple],
                         ids=["float-list", "bytes-escapes", "wrapped-base64", "spaced-hex",
                              "int-tuple"])
def test_weights_as_python_literal(nexus, bundle, make):
    bundle.smuggle("src/helpers.py", make())
    expect_fail(nexus, bundle, "literal-blob")


def test_weights_as_json_array_in_selftest(nexus, bundle):
    st = json.loads(bundle.path("config/selftest.json").read_text())
    st["cache"] = [float(x) for x in floats(4096)]
    bundle.smuggle("config/selftest.json", json.dumps(st))
    expect_fail(nexus, bundle, "selftest-malformed")


def test_weights_as_golden_outputs_without_sandbox(nexus, bundle):
    """Golden numbers only TRV-5 can account for are capped when it is off."""
    st = json.loads(bundle.path("config/selftest.json").read_text())
    st["cases"][0]["outputs"]["hidden"] = [float(x) for x in floats(4096)]
    bundle.smuggle("config/selftest.json", json.dumps(st))
    expect_fail(nexus, bundle, "literal-blob")


def test_loose_selftest_tolerance(nexus, bundle):
    """A huge tolerance would let any numbers pass as outputs."""
    st = json.loads(bundle.path("config/selftest.json").read_text())
    st["tolerance"] = 1e30
    bundle.smuggle("config/selftest.json", json.dumps(st))
    expect_fail(nexus, bundle, "selftest-malformed")


def test_weights_as_selftest_texts(nexus, bundle):
    st = json.loads(bundle.path("config/selftest.json").read_text())
    blob = base64.b64encode(floats(4096).tobytes()).decode()
    st["cases"] += [{"text": " ".join(blob[i:i + 60] for i in range(j, j + 3000, 60)),
                     "outputs": {"logits": [0.5, 0.5]}} for j in range(0, 18000, 3000)]
    bundle.smuggle("config/selftest.json", json.dumps(st))
    expect_fail(nexus, bundle, "literal-blob")


def test_weights_as_yaml_list(nexus, bundle):
    bundle.smuggle("config/runtime.yaml", bf.RUNTIME_YAML + "labels_prior:\n" +
                   "".join(f"  - {x:.6g}\n" for x in floats(4096)))
    expect_fail(nexus, bundle, "literal-blob")


def test_wrapped_base64_in_readme(nexus, bundle):
    bundle.smuggle("README.md", "# Spam\n\n" + base64.encodebytes(floats(4096).tobytes()).decode())
    expect_fail(nexus, bundle, "literal-blob")


def test_vocab_txt_carrying_a_tensor(nexus, bundle):
    b = base64.b64encode(floats(16384).tobytes()).decode()
    entries = [b[i:i + 64] for i in range(0, len(b), 64)]
    bundle.smuggle("model/tokenizer/vocab.txt", "\n".join(bf.VOCAB + entries) + "\n")
    expect_fail(nexus, bundle, "vocab-entry-suspicious")


def test_tokenizer_vocab_carrying_a_tensor(nexus, bundle):
    tok = json.loads(bundle.path("model/tokenizer/tokenizer.json").read_text())
    b = floats(16384).tobytes().hex()
    for i in range(0, len(b), 32):
        tok["model"]["vocab"][b[i:i + 32]] = len(tok["model"]["vocab"])
    bundle.smuggle("model/tokenizer/tokenizer.json", json.dumps(tok))
    expect_fail(nexus, bundle, "vocab-entry-suspicious")


# -- evading the term scanner ------------------------------------------------------

@pytest.mark.parametrize("src,code", [
    ('NAME = "te\\x61cher"\n', "term-in-string"),
    ('NAME = "\\u0074eacher"\n', "term-in-string"),
    ('NAME = "\\N{LATIN SMALL LETTER T}eacher"\n', "term-in-string"),
    ("NAME = 'te' 'acher'\n", "term-in-string"),
    ("NAME = '\\x74' 'eacher'\n", "term-in-string"),
    ("NAME = 'te' + '\\u0061cher'\n", "term-in-string"),
    ("from . import teacher_model\n", "term-in-code"),
    ("from .teacher_model import X\n", "term-in-code"),
    # Python NFKC-normalises identifiers: this IS the name teacher_model
    ("import \uff54eacher_model\n", "term-in-code"),
    ("\uff54eacher = 1\n", "term-in-code"),
    ("m = getattr(__builtins__, '__imp' + 'ort__')('x')\n", "dynamic-import"),
    ("m = globals()['__builtins__'].__dict__['__import__']('x')\n", "dynamic-import"),
    ("import importlib.util as u\ns = u.spec_from_file_location('m', 'x.py')\n", "dynamic-import"),
    ("import runpy\nrunpy.run_path('x.py')\n", "dynamic-import"),
    ("exec(compile(open('x').read(), 'x', 'exec'))\n", "dynamic-import"),
    ("import builtins\nf = builtins.exec\nf('import x')\n", "dynamic-import"),
    # unpickling imports and calls whatever the data names; marshal loads
    # code objects; sys.modules reaches a module by computed name
    ("import pickle\nm = pickle.loads(open('x', 'rb').read())\n", "dynamic-import"),
    ("from pickle import load\n", "dynamic-import"),
    ("import marshal\nc = marshal.loads(b'')\n", "dynamic-import"),
    ("import shelve\nd = shelve.open('x')\n", "dynamic-import"),
    ("p = __import__('pickle')\n", "dynamic-import"),
    ("import sys\nm = sys.modules['x' + 'y']\n", "dynamic-import"),
    ("import sys\nm = getattr(sys, 'modules')['x']\n", "dynamic-import"),
    # code loaded by path, from source text, or native
    ("from importlib.machinery import SourceFileLoader\nSourceFileLoader('m', 'x.py').load_module()\n",
     "dynamic-import"),
    ("import code\ncode.InteractiveInterpreter().runsource(open('x').read())\n", "dynamic-import"),
    ("import ctypes\nlib = ctypes.CDLL('/opt/x.so')\n", "dynamic-import"),
    ("import zipimport\nzipimport.zipimporter('x.zip').load_module('m')\n", "dynamic-import"),
    ("import pkgutil\nm = pkgutil.resolve_name('x' + n)\n", "dynamic-import"),
    ("import pydoc\nm = pydoc.locate('x' + n)\n", "dynamic-import"),
    # the importer by a computed attribute name
    ("import builtins\nf = getattr(builtins, bytes([95, 95]).decode() + 'import__')\n",
     "dynamic-import"),
    ("f = __builtins__.__dict__[chr(95) * 2 + 'import' + chr(95) * 2]\n", "dynamic-import"),
    ("import sys\nm = getattr(sys, 'mod' + 'ules')\n", "dynamic-import"),
    ("import importlib\nf = vars(importlib)[n]\n", "dynamic-import"),
])
def test_python_term_evasion(nexus, bundle, src, code):
    bundle.smuggle("src/utils.py", src)
    expect_fail(nexus, bundle, code)


@pytest.mark.parametrize("yaml,code", [
    ("? teacher_path\n: /m/t.onnx\n", "term-in-key"),
    ("extra: {teacher: /m/t.onnx}\n", "term-in-key"),
    ("extra: [a, distillation]\n", "term-in-value"),
    ("extra: first line\n  distillation here\n", "term-in-value"),
    ('extra: "te\\x61cher"\n', "term-in-value"),
    ('extra: "te\\u0061cher"\n', "term-in-value"),
    ("extra: |\n  teacher\n", "term-in-value"),
    ("extra: !!str teacher\n", "term-in-value"),
    ("extra: !!binary dGVhY2hlcl9wYXRo\n", "term-in-value"),
    ("extra: !!binary |\n  dGVhY2hl\n  cl9wYXRo\n", "term-in-value"),
    ('"teach\\\n  er": 1\n', "term-in-key"),
])
def test_yaml_term_evasion(nexus, bundle, yaml, code):
    bundle.smuggle("config/runtime.yaml", bf.RUNTIME_YAML + yaml)
    expect_fail(nexus, bundle, code)


def test_json_escape_in_tokenizer_key(nexus, bundle):
    text = bundle.path("model/tokenizer/tokenizer.json").read_text()
    text = text.replace('"version"', '"te\\u0061cher_version"', 1)
    bundle.smuggle("model/tokenizer/tokenizer.json", text)
    expect_fail(nexus, bundle, "term-in-key")


# -- integrity / filesystem ---------------------------------------------------------

def fail_codes(nexus, b):
    rc, rep = verify(nexus, b)
    assert rc == 1 and rep["verdict"] == "FAIL", rep
    return codes(rep, "FAIL")


def test_unreferenced_external_data_file(nexus, bundle):
    """A data file the model does not name is a channel for anything."""
    bundle.smuggle("model/student_model.onnx.data", floats(4096).tobytes())
    assert "unexpected-path" in fail_codes(nexus, bundle)


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


# -- nexus build ----------------------------------------------------------------------

from test_build import build, tree  # noqa: E402
from workspace import default_config, make_workspace  # noqa: E402


@pytest.mark.parametrize("files", ["[../x.py]", "[inference.py, ../serving/utils.py]",
                                   "[/etc/passwd]", "[sub/../../x.py]"])
def test_build_source_file_escaping(nexus, tmp_path, files):
    (tmp_path / "x.py").write_text("X = 1\n")
    ws = make_workspace(tmp_path / "ws", config={"source": f"{{dir: serving, files: {files}}}"})
    r = build(nexus, ws, tmp_path / "b")
    assert r.returncode == 2, r.stderr
    assert not (tmp_path / "b").exists()


def test_build_tokenizer_dir_extra_files_not_copied(nexus, tmp_path):
    ws = make_workspace(tmp_path / "ws")
    (ws / "artifacts/tokenizer/teacher.pt").write_bytes((ws / "checkpoints/teacher.pt").read_bytes())
    (ws / "artifacts/tokenizer/merges.txt").write_text("a b\n")
    r = build(nexus, ws, tmp_path / "b")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path / "b/model/tokenizer")) == ["tokenizer.json", "vocab.txt"]


def test_build_readme_symlink_refused(nexus, tmp_path):
    ws = make_workspace(tmp_path / "ws")
    (ws / "README.md").unlink()
    (ws / "README.md").symlink_to("serving/teacher_model.py")
    r = build(nexus, ws, tmp_path / "b")
    assert r.returncode == 3, r.stderr
    assert "README.md" in r.stderr
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("variant", ["./artifacts/student.onnx", "artifacts//student.onnx",
                                     "artifacts/./student.onnx", "artifacts/student.onnx/"])
def test_build_student_listed_as_teacher_by_path_variant(nexus, tmp_path, variant):
    ws = make_workspace(tmp_path / "ws", config={"teacher": f"[artifacts/teacher.onnx, '{variant}']"})
    r = build(nexus, ws, tmp_path / "b")
    assert r.returncode == 2, r.stderr
    assert not (tmp_path / "b").exists()


def test_build_student_listed_as_teacher_through_bind_of_same_inode(nexus, tmp_path):
    """Same file reached by a second directory entry of the same inode is a
    hard link: refused (the build compares device/inode as well as names)."""
    ws = make_workspace(tmp_path / "ws")
    os.link(ws / "artifacts/student.onnx", ws / "checkpoints/model.onnx")
    ws2 = make_workspace(tmp_path / "ws", config={"teacher": "[checkpoints/model.onnx]"})
    r = build(nexus, ws2, tmp_path / "b")
    assert r.returncode in (2, 3), r.stderr
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("rows", [None, 512], ids=["tiny", "16KiB-embedding"])
def test_build_student_identical_to_teacher_under_another_name(nexus, tmp_path, rows):
    ws = make_workspace(tmp_path / "ws", config={"teacher": "[checkpoints/big_model.onnx]"},
                        vocab_rows=rows)
    (ws / "checkpoints/big_model.onnx").write_bytes((ws / "artifacts/student.onnx").read_bytes())
    r = build(nexus, ws, tmp_path / "b")
    assert r.returncode == 1, r.stderr
    # tiny: every tensor is under the 4 KiB fingerprint floor, so only the
    # whole-file comparison names it; 16 KiB: both do, the first one wins
    assert "byte-identical to the teacher file checkpoints/big_model.onnx" in r.stderr, r.stderr
    assert not (tmp_path / "b").exists()


def test_build_source_file_copied_from_teacher_code(nexus, tmp_path):
    """A packaged file equal to a listed teacher file under another name."""
    ws = make_workspace(tmp_path / "ws", config={"teacher": "[artifacts/teacher.onnx, serving/t.py]"})
    (ws / "serving/t.py").write_text((ws / "serving/utils.py").read_text())
    r = build(nexus, ws, tmp_path / "b")
    assert r.returncode == 1, r.stderr
    assert "serving/utils.py is byte-identical to the teacher file serving/t.py" in r.stderr
    assert not (tmp_path / "b").exists()


# -- declared runtime packages ------------------------------------------------------------

def runtime_with_packages(pkgs):
    return bf.RUNTIME_YAML.replace("python_packages: [onnxruntime, numpy]",
                                   f"python_packages: [{', '.join(pkgs)}]")


@pytest.mark.parametrize("pkg", ["torch", "tensorflow", "jax", "transformers", "keras"])
def test_training_framework_declared_warns(nexus, bundle, pkg):
    """A framework makes the sandbox import check accept its training modules."""
    bundle.smuggle("config/runtime.yaml", runtime_with_packages(["onnxruntime", "numpy", pkg]))
    rc, rep = verify(nexus, bundle)
    assert rc == 0, rep
    assert "training-package-declared" in codes(rep, "WARN"), rep
    rc, rep = verify(nexus, bundle, "--strict")
    assert rc == 1


@pytest.mark.parametrize("pkg", ["torch.optim", "torch.autograd", "transformers.trainer",
                                 "deepspeed", "accelerate", "peft", "trl", "pytorch_lightning",
                                 "lightning", "torch.distributed"])
def test_training_only_package_declared_fails(nexus, bundle, pkg):
    bundle.smuggle("config/runtime.yaml", runtime_with_packages(["numpy", pkg]))
    expect_fail(nexus, bundle, "training-package-declared")


def test_plain_runtime_packages_are_fine(nexus, bundle):
    bundle.smuggle("config/runtime.yaml", runtime_with_packages(["numpy", "onnxruntime",
                                                                 "tokenizers", "torchvision_x"]))
    rc, rep = verify(nexus, bundle)
    assert "training-package-declared" not in codes(rep), rep


# -- sandbox --------------------------------------------------------------------------------

PROBE_C = r'''
#include <dirent.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

static int esc;
static void bad(const char *what) { fprintf(stderr, "ESCAPED %s; ", what); esc = 1; }

int main(int argc, char **argv)
{
    const char *dirs[] = { "/root", "/home", "/work", "/tmp", "/etc", NULL };
    const char *writes[] = { "HOSTMARK", "/tmp/nexus_probe_owned", "/owned", NULL };
    char self[4096], path[4200];
    ssize_t n;
    int i, fd;

    for (i = 0; dirs[i]; i++) {
        DIR *d = opendir(dirs[i]);
        if (d && readdir(d) && readdir(d) && readdir(d)) bad(dirs[i]);
        if (d) closedir(d);
    }
    if ((fd = open("/etc/shadow", O_RDONLY)) >= 0) bad("/etc/shadow");
    if ((fd = open("/etc/passwd", O_RDONLY)) >= 0) bad("/etc/passwd");
    /* a private tmpfs may accept these: the test looks for them on the host */
    for (i = 0; writes[i]; i++)
        if ((fd = open(writes[i], O_WRONLY | O_CREAT, 0644)) >= 0) fprintf(stderr, "wrote %s; ", writes[i]);
    if ((n = readlink("/proc/self/exe", self, sizeof(self) - 1)) > 0) {
        self[n] = 0;
        snprintf(path, sizeof(path), "%s/../owned", dirname(self));
        if ((fd = open(path, O_WRONLY | O_CREAT, 0644)) >= 0) fprintf(stderr, "wrote %s; ", path);
    }
    {
        struct sockaddr_in a = { AF_INET, htons(53) };
        int s = socket(AF_INET, SOCK_STREAM, 0);
        inet_pton(AF_INET, "1.1.1.1", &a.sin_addr);
        if (s >= 0 && connect(s, (void *)&a, sizeof(a)) == 0) bad("network");
    }
    fprintf(stderr, "probe done (%s)\n", esc ? "escaped" : "contained");
    return 3;
}
'''


def sandbox_ok():
    """Some sandbox backend (bwrap or landlock) can run here; other modules
    import this to skip tests that need one."""
    return sandbox_usable("bwrap") or sandbox_usable("landlock")


def test_planted_nexus_cli_is_refused_and_contained(nexus, bundle, tmp_path, sandbox_backend):
    import subprocess
    mark = tmp_path / "host_owned"
    src = tmp_path / "probe.c"
    src.write_text(PROBE_C.replace("HOSTMARK", str(mark)))
    exe = tmp_path / "probe"
    subprocess.run(["cc", "-O0", "-o", str(exe), str(src)], check=True)
    bundle.smuggle("bin/nexus_cli", exe.read_bytes())
    rc, rep = verify(nexus, bundle, sandbox=True, timeout=120)
    assert rc == 1
    assert "runtime-mismatch" in codes(rep, "FAIL")
    # verify never executes a runtime it does not trust (nor anything of a
    # bundle whose allow-list FAILed)
    assert "functional-skipped" in codes(rep, "INFO")
    assert "probe done" not in json.dumps(rep)
    # nexus run does execute it, in the sandbox: it sees nothing of the host
    r = run(nexus, "run", bundle.root, "--text", "x", timeout=60)
    assert "probe done (contained)" in r.stderr, r.stderr
    assert "ESCAPED" not in r.stderr
    assert not mark.exists() and not os.path.exists("/tmp/nexus_probe_owned")
    assert not bundle.path("owned").exists() and not bundle.path("bin/owned").exists()


IMPORT_PROBE = '''\
import os
import socket

SEEN = []
try:
    SEEN.append("read " + open("/etc/shadow").read(8))
except OSError:
    pass
for d in ("/root", "/home", "/work"):
    try:
        if len(os.listdir(d)) > 0:
            SEEN.append("list " + d)
    except OSError:
        pass
try:
    socket.create_connection(("1.1.1.1", 53), timeout=2)
    SEEN.append("network")
except OSError:
    pass
try:
    with open("HOSTMARK", "w") as f:
        f.write("x")
    SEEN.append("wrote host")
except OSError:
    pass
if SEEN:
    raise SystemExit("ESCAPED " + ", ".join(SEEN))
'''


@pytest.mark.parametrize("catch", [True, False], ids=["attempts-caught", "attempt-raises"])
def test_python_import_time_escape_is_contained(nexus, tmp_path, catch, sandbox_backend):
    """A src/ module that probes the host when imported: the import check
    runs it in the sandbox, where it sees nothing.  An attempt whose error
    escapes fails the import; an attempt the module catches is contained
    but not reported (docs/TRV.md, Known limits)."""
    from workspace import UTILS_PY
    mark = tmp_path / "host_owned"
    probe = IMPORT_PROBE.replace("HOSTMARK", str(mark))
    if not catch:
        probe = "open('/etc/shadow').read()\n" + probe
    ws = make_workspace(tmp_path / "ws", utils_py=UTILS_PY + probe)
    r = build(nexus, ws, tmp_path / "b")
    assert "ESCAPED" not in r.stdout + r.stderr, r.stderr
    assert not mark.exists()
    if catch:
        assert r.returncode == 0, r.stderr
        env = dict(os.environ)
        rv = run(nexus, "verify", "--json", tmp_path / "b", env=env, timeout=120)
        assert rv.returncode == 0, rv.stdout
        assert "ESCAPED" not in rv.stdout
        assert not mark.exists()
    else:
        assert r.returncode == 1, r.stderr
        assert "functional-import-io" in r.stderr, r.stderr
        # build names the workspace file the bundle's src/utils.py came from
        assert "serving/utils.py" in r.stderr, r.stderr
        assert not (tmp_path / "b").exists()


# -- ONNX: data hidden in strings and constants -------------------------------------------

def blob_b64(nbytes=40 << 10):
    """A second model's worth of bytes, under the 64 KiB size slack."""
    return base64.b64encode(floats(nbytes // 4).tobytes()).decode()


def string_tensor(name):
    t = helper.make_tensor(name, TensorProto.STRING, [1], [blob_b64().encode()])
    return t


@pytest.mark.parametrize("make", [
    lambda: bf.student_model(metadata={"notes": blob_b64()}),
    lambda: bf.student_model(doc_string=blob_b64()),
    lambda: bf.student_model(extra_nodes=[helper.make_node(
        "Identity", ["logits"], ["x"], name="tag", note=blob_b64())]),
    lambda: bf.student_model(extra_nodes=[helper.make_node(
        "Identity", ["logits"], ["x"], name="tag", note=floats(10240).tobytes())]),
    lambda: bf.student_model(extra_nodes=[helper.make_node(
        "Constant", [], ["c"], name="k", value=string_tensor("labels"))]),
], ids=["metadata-base64", "doc-base64", "attribute-base64", "attribute-raw-bytes",
        "string-constant"])
def test_onnx_blob_in_a_string_field(nexus, bundle, make):
    with_model(bundle, make())
    expect_fail(nexus, bundle, "onnx-string-blob")


def test_onnx_short_strings_are_fine(nexus, bundle):
    with_model(bundle, bf.student_model(metadata={"license": "MIT", "version": "1.2"}))
    rc, rep = verify(nexus, bundle)
    assert codes(rep, "FAIL") == set(), rep


def test_onnx_big_constant_multiplied_by_zero(nexus, bundle):
    """4 MiB of weights in a Constant node, referenced (x 0) so no check
    calls it unreferenced: the parameters do not explain the bytes."""
    big = numpy_helper.from_array(floats(1 << 20).reshape(1024, 1024), "k")
    nodes = [helper.make_node("Constant", [], ["kc"], name="k", value=big),
             helper.make_node("ReduceSum", ["kc"], ["ks"], name="ks", keepdims=0),
             helper.make_node("Mul", ["ks", "zero"], ["kz"], name="kz")]
    zero = numpy_helper.from_array(np.zeros((), np.float32), "zero")
    with_model(bundle, bf.student_model(extra_nodes=nodes, extra_initializers=[zero]))
    rep = expect_fail(nexus, bundle, "model-size-unexplained")
    assert check_status(rep, "size") == "FAIL"


def test_onnx_big_initializer_multiplied_by_zero_with_teacher(nexus, bundle, tmp_path):
    """Counted as parameters; ReduceSum of it computes from constants only,
    which an exporter folds (constant-subgraph), and --teacher names it."""
    w = floats(1 << 16, seed=3)
    t = numpy_helper.from_array(w.reshape(256, 256), "t")
    nodes = [helper.make_node("ReduceSum", ["t"], ["ts"], name="ts", keepdims=0),
             helper.make_node("Mul", ["ts", "zero"], ["tz"], name="tz")]
    zero = numpy_helper.from_array(np.zeros((), np.float32), "zero")
    m = bf.student_model(extra_nodes=nodes, extra_initializers=[t, zero])
    bundle.meta["parameters"] = bf.human(bf.parameters(m))
    with_model(bundle, m)
    rc, rep = verify(nexus, bundle)
    assert codes(rep, "FAIL") == {"constant-subgraph"}, rep
    teacher = bf.student_model(extra_initializers=[numpy_helper.from_array(
        w.reshape(256, 256), "layer7")])
    tp = tmp_path / "teacher.onnx"
    tp.write_bytes(teacher.SerializeToString())
    expect_fail(nexus, bundle, "teacher-tensor-copied", "--teacher", str(tp))


def test_onnx_raw_data_longer_than_its_dims(nexus, bundle):
    """A 2-element tensor carrying 400 KiB of raw_data: stored bytes are not
    parameters, only what the elements can take is."""
    t = TensorProto(name="b", data_type=TensorProto.FLOAT, dims=[bf.LABELS])
    t.raw_data = floats(100 << 10).tobytes()
    g = bf.student_graph()
    g.initializer[2].CopyFrom(t)
    with_model(bundle, bf.student_model(graph=g))
    expect_fail(nexus, bundle, "model-size-unexplained")


def test_planted_nexus_cli_not_run_when_findings_flood_the_report(nexus, bundle, tmp_path,
                                                                 sandbox_backend):
    """2100 extra files push runtime-mismatch past the 2000 stored findings:
    the decision not to execute must not depend on what the report kept."""
    import subprocess
    src = tmp_path / "sleep.c"
    src.write_text("#include <unistd.h>\nint main(void){ sleep(4); return 3; }\n")
    exe = tmp_path / "sleep"
    subprocess.run(["cc", "-O0", "-o", str(exe), str(src)], check=True)
    bundle.smuggle("bin/nexus_cli", exe.read_bytes())
    bundle.unlock()
    for i in range(2100):
        (bundle.root / "src" / f"f{i}.py").write_text("")
    bundle.lock()
    rc, rep = verify(nexus, bundle, sandbox=True, timeout=120)
    assert rc == 1 and rep["dropped_findings"] > 0
    fn = next(c for c in rep["checks"] if c["id"] == "functional")
    assert fn["duration_ms"] < 3000, fn


def external_model(bundle, extra, offset=0):
    """W kept in model/student_model.onnx.data at offset, plus extra bytes
    in that file that no tensor reads."""
    m = bf.student_model()
    w = m.graph.initializer[1]
    data = w.raw_data
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "student_model.onnx.data"), ("offset", str(offset)),
                 ("length", str(len(data)))):
        e = w.external_data.add()
        e.key, e.value = k, v
    bundle.write("model/student_model.onnx.data", b"\0" * offset + data + extra)
    with_model(bundle, m)


@pytest.mark.parametrize("extra", [1 << 20, 32 << 10], ids=["1MiB", "32KiB"])
def test_onnx_external_file_with_bytes_no_tensor_reads(nexus, bundle, extra):
    """A referenced data file is not sniffed: what no tensor reads is a
    channel as wide as the file."""
    external_model(bundle, floats(extra // 4).tobytes())
    expect_fail(nexus, bundle, "onnx-external-unread")


def test_onnx_external_file_read_exactly_is_fine(nexus, bundle):
    external_model(bundle, b"")
    rc, rep = verify(nexus, bundle)
    assert rc == 0, rep["findings"]


def test_onnx_external_file_zero_alignment_padding_is_fine(nexus, bundle):
    external_model(bundle, b"\0" * 4000, offset=4096)
    rc, rep = verify(nexus, bundle)
    assert rc == 0, rep["findings"]


def test_onnx_external_file_zero_gap_longer_than_alignment(nexus, bundle):
    """Zeros carry nothing, but a gap no exporter leaves is not padding."""
    external_model(bundle, b"", offset=128 << 10)
    expect_fail(nexus, bundle, "onnx-external-unread")


def test_onnx_external_file_data_in_the_alignment_gap(nexus, bundle):
    external_model(bundle, b"", offset=4096)
    data = bytearray(bundle.path("model/student_model.onnx.data").read_bytes())
    data[100:108] = b"smuggled"
    bundle.smuggle("model/student_model.onnx.data", bytes(data))
    expect_fail(nexus, bundle, "onnx-external-unread")
