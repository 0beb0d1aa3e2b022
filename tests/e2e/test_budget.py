"""The leak budget (docs/TRV.md, "Leak budget") and plain bundle files.

A generator hides a teacher tensor's bytes in random encodings (bases,
alphabets, word splits, prose between the words) spread across the
bundle's text files; every variant whose tensor carries more information
than the budget must FAIL.  The clean example and the real-shaped bundles
of the suite must PASS; the budget they use is printed (pytest -s).
"""
import base64
import json
import lzma
import os
import random
import re

import numpy as np
import pytest

import bundle_fixture as bf
from conftest import ROOT, run
from verify_helpers import codes, verify
from workspace import make_workspace

BUDGET = 16 << 10          # a lowered budget keeps the fixtures small
PROSE = ("the model reads each message and scores it as spam or not spam so that "
         "operators can route mail before it reaches the inbox of a user").split()


def teacher_tensor(nbytes, seed):
    """A teacher layer: float32 weights, random as trained weights are."""
    return np.random.default_rng(seed).standard_normal(nbytes // 4).astype(np.float32).tobytes()


def budget_used(rep):
    f = next(f for f in rep["findings"] if f["code"] in ("budget-total", "budget-exceeded"))
    return int(re.search(r"carries (\d+) bytes", f["message"]).group(1))


# -- encodings -------------------------------------------------------------

def _remap(text, src, rng, letters_only=False):
    pool = list("abcdefghijklmnopqrstuvwxyz") if letters_only else list(src)
    dst = rng.sample(pool, len(src))
    return text.translate(str.maketrans(src, "".join(dst)))


def enc_hex_letters(raw, rng):
    """hex in a random digit-free alphabet of 16 letters"""
    return _remap(raw.hex(), "0123456789abcdef", rng, letters_only=True)


def enc_base64_alphabet(raw, rng):
    """base64 in a shuffled alphabet"""
    b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    return _remap(base64.b64encode(raw).decode().rstrip("="), b64, rng)


def enc_base85(raw, rng):
    return base64.b85encode(raw).decode()


def enc_base32_lower(raw, rng):
    """base32, lower case, shuffled"""
    src = "abcdefghijklmnopqrstuvwxyz234567"
    return _remap(base64.b32encode(raw).decode().rstrip("=").lower(), src, rng)


def enc_cyrillic(raw, rng):
    """base32 spelled in Cyrillic lower-case letters"""
    src = "abcdefghijklmnopqrstuvwxyz234567"
    cyr = "абвгдежзийклмнопрстуфхцчшщъыьэюя"
    return base64.b32encode(raw).decode().rstrip("=").lower().translate(
        str.maketrans(src, cyr))


def enc_accented(raw, rng):
    """base32 spelled in accented Latin letters"""
    src = "abcdefghijklmnopqrstuvwxyz234567"
    acc = "àáâãäåçèéêëìíîïñòóôõöùúûüýÿāăąćĉ"
    return base64.b32encode(raw).decode().rstrip("=").lower().translate(
        str.maketrans(src, acc))


ENCODINGS = [enc_accented, enc_hex_letters, enc_base64_alphabet, enc_base85, enc_base32_lower, enc_cyrillic]


def words(text, rng, prefix=""):
    """Cut an encoding into short words (3-8 characters)."""
    out, i = [], 0
    while i < len(text):
        n = rng.randint(3, 8)
        out.append(prefix + text[i:i + n])
        i += n
    return out


def with_prose(ws, rng, every=4):
    """Interleave ordinary words."""
    out = []
    for i, w in enumerate(ws):
        out.append(w)
        if i % every == every - 1:
            out.append(rng.choice(PROSE))
    return out


# -- where the words go ----------------------------------------------------

def put_vocab(b, ws, rng):
    seen = set(bf.VOCAB)
    extra = [w for w in dict.fromkeys(ws) if w not in seen]
    b.write("model/tokenizer/vocab.txt", "\n".join(bf.VOCAB + extra) + "\n")


def put_readme(b, ws, rng):
    b.write("README.md", "# Spam classifier\n\n" + " ".join(with_prose(ws, rng)) + "\n")


def put_license(b, ws, rng):
    lines = [" ".join(ws[i:i + 10]) for i in range(0, len(ws), 10)]
    b.write("LICENSE", "MIT License\n\n" + "\n".join(lines) + "\n")


def put_python(b, ws, rng):
    body = ",\n".join(f'    "{w}"' for w in ws)
    b.write("src/labels.py", f'"""Label names."""\nNAMES = (\n{body},\n)\n')


def put_yaml_comment(b, ws, rng):
    text = bf.RUNTIME_YAML + "".join(f"# {' '.join(ws[i:i + 12])}\n"
                                     for i in range(0, len(ws), 12))
    b.write("config/runtime.yaml", text)


PLACES = [put_vocab, put_readme, put_license, put_python, put_yaml_comment]


def spread(b, ws, rng, places):
    """Deal the words out to several files, in order."""
    k = len(places)
    for i, place in enumerate(places):
        place(b, ws[i * len(ws) // k:(i + 1) * len(ws) // k], rng)


# -- the generator ---------------------------------------------------------

VARIANTS = [(enc, places) for enc in ENCODINGS
            for places in ([put_vocab], [put_readme, put_license],
                           [put_python, put_yaml_comment], PLACES)]


@pytest.mark.parametrize("enc,places", VARIANTS,
                         ids=[f"{e.__name__[4:]}-{'+'.join(p.__name__[4:] for p in ps)}"
                              for e, ps in VARIANTS])
def test_generator_every_encoding_over_the_budget_fails(nexus, bundle, enc, places):
    rng = random.Random(f"{enc.__name__}{len(places)}")
    raw = teacher_tensor(2 * BUDGET, rng.randrange(1 << 30))
    # the tensor carries more than the budget by any compressor's measure
    assert len(lzma.compress(raw, preset=9)) > BUDGET
    prefix = "##" if places == [put_vocab] else ""
    spread(bundle, words(enc(raw, rng), rng, prefix), rng, places)
    bundle.regen_manifest()
    rc, rep = verify(nexus, bundle, "--max-leak-bytes", str(BUDGET))
    assert rc == 1 and "budget-exceeded" in codes(rep, "FAIL"), rep["findings"]
    assert budget_used(rep) > BUDGET


@pytest.mark.parametrize("enc", ENCODINGS, ids=[e.__name__[4:] for e in ENCODINGS])
def test_generator_tokenizer_extra_keys_fail(nexus, bundle, enc):
    rng = random.Random(enc.__name__)
    raw = teacher_tensor(4096, 3)
    tok = json.loads(bundle.path("model/tokenizer/tokenizer.json").read_text())
    ws = words(enc(raw, rng), rng)
    tok["model"]["notes"] = " ".join(ws)                 # an extra key
    tok["normalizer"]["lowercase_hint"] = ws[:4]          # short strings, still unknown
    bundle.write("model/tokenizer/tokenizer.json", json.dumps(tok))
    bundle.regen_manifest()
    rc, rep = verify(nexus, bundle)
    assert rc == 1 and "tokenizer-schema" in codes(rep, "FAIL"), rep["findings"]


def _tokenizer_edit(nexus, bundle, edit):
    tok = json.loads(bundle.path("model/tokenizer/tokenizer.json").read_text())
    edit(tok)
    bundle.write("model/tokenizer/tokenizer.json", json.dumps(tok))
    bundle.regen_manifest()
    rc, rep = verify(nexus, bundle)
    assert rc == 1 and "tokenizer-schema" in codes(rep, "FAIL"), rep["findings"]


def test_tokenizer_long_string_in_a_setting_fails(nexus, bundle):
    data = enc_base85(teacher_tensor(256, 4), random.Random(1))
    _tokenizer_edit(nexus, bundle, lambda tok: tok.update(version=data))


def test_tokenizer_unknown_type_fails(nexus, bundle):
    _tokenizer_edit(nexus, bundle,
                    lambda tok: tok.update(pre_tokenizer={"type": "Stash", "data": "x"}))


def test_budget_can_only_be_lowered(nexus, bundle):
    env = dict(os.environ, NEXUS_RUNTIME_DIR=str(bundle.runtime_dir))
    r = run(nexus, "verify", "--no-sandbox", "--max-leak-bytes", "1MiB", bundle.root, env=env)
    assert r.returncode == 2 and "max-leak-bytes" in r.stderr
    rc, rep = verify(nexus, bundle, "--max-leak-bytes", "100")
    assert rc == 1 and "budget-exceeded" in codes(rep, "FAIL")


# -- no false alarms -------------------------------------------------------

def test_fixture_bundle_is_within_budget(nexus, bundle):
    rc, rep = verify(nexus, bundle)
    assert rc == 0 and not codes(rep, "FAIL"), rep["findings"]
    used = budget_used(rep)
    print(f"\nbudget used by the fixture bundle: {used} bytes")
    assert used < 8 << 10
    per_file = [f for f in rep["findings"] if f["code"] == "budget-used"]
    assert {f["path"] for f in per_file} >= {"README.md", "LICENSE", "model/tokenizer/vocab.txt",
                                             "model/student_model.onnx", "manifest.json"}


def _build(nexus, ws, out, *args):
    return run(nexus, "build", ws, "-o", out, *args, timeout=300)


def test_example_bundle_is_within_budget(nexus, tmp_path):
    out = tmp_path / "b"
    r = _build(nexus, ROOT / "examples" / "spam-distill", out)
    assert r.returncode == 0, r.stderr
    r = run(nexus, "verify", "--json", "--no-sandbox", out)
    rep = json.loads(r.stdout)
    assert not codes(rep, "FAIL"), rep["findings"]
    used = budget_used(rep)
    print(f"\nbudget used by examples/spam-distill: {used} bytes")
    assert used < 16 << 10


def test_workspace_bundle_is_within_budget(nexus, tmp_path):
    out = tmp_path / "b"
    r = _build(nexus, make_workspace(tmp_path / "ws"), out)
    assert r.returncode == 0, r.stderr
    rep = json.loads(run(nexus, "verify", "--json", "--no-sandbox", out).stdout)
    assert not codes(rep, "FAIL"), rep["findings"]
    print(f"\nbudget used by the test workspace's bundle: {budget_used(rep)} bytes")


# -- the insider path: only the workspace changes --------------------------

@pytest.fixture
def key(nexus, tmp_path):
    r = run(nexus, "keygen", "-o", tmp_path / "release")
    assert r.returncode == 0, r.stderr
    return tmp_path / "release.key"


def _insider_build(nexus, ws, tmp_path, key):
    out = tmp_path / "out" / "nexus_bundle_v1"
    out.parent.mkdir()
    r = _build(nexus, ws, out, "--key", key)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert not out.exists() and os.listdir(out.parent) == [], "something was published"
    return r


def test_insider_teacher_in_vocab_and_license_is_refused(nexus, tmp_path, key):
    """Teacher bytes hidden in the workspace's vocabulary and LICENSE, with
    the default budget: the official signed build must refuse."""
    ws = make_workspace(tmp_path / "ws")
    rng = random.Random(22)
    raw = teacher_tensor(96 << 10, 5)
    ws_words = words(enc_hex_letters(raw, rng), rng, "##")
    half = len(ws_words) // 2
    vocab = (ws / "artifacts/tokenizer/vocab.txt").read_text().split("\n")[:-1]
    (ws / "artifacts/tokenizer/vocab.txt").write_text(
        "\n".join(vocab + list(dict.fromkeys(ws_words[:half]))) + "\n")
    (ws / "artifacts/tokenizer/tokenizer.json").unlink()
    (ws / "LICENSE").write_text("Apache License 2.0\n\n" +
                                " ".join(w[2:] for w in ws_words[half:]) + "\n")
    r = _insider_build(nexus, ws, tmp_path, key)
    assert "budget-exceeded" in r.stdout + r.stderr


def test_insider_teacher_name_as_architecture_is_refused(nexus, tmp_path, key):
    ws = make_workspace(tmp_path / "ws", config={"architecture": "BertTeacher-24L"})
    r = _insider_build(nexus, ws, tmp_path, key)
    assert "term-in-value" in r.stdout + r.stderr


# -- bundle files are plain ------------------------------------------------

def _setfattr(path, name, value):
    r = run("setfattr", "-n", name, "-v", value, path)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("rel,name,value", [
    ("LICENSE", "user.data", "0s" + base64.b64encode(b"\x00" * 64).decode()),
    ("model/tokenizer/vocab.txt", "user.x", "teacher layer"),
    ("model", "user.note", "a directory"),
    ("src/inference.py", "trusted.t", "x"),
])
def test_xattr_on_a_bundle_file_fails(nexus, bundle, rel, name, value):
    _setfattr(bundle.path(rel), name, value)
    rc, rep = verify(nexus, bundle)
    assert rc == 1 and "extended-attribute" in codes(rep, "FAIL"), rep["findings"]
    assert any(f["path"] == rel for f in rep["findings"] if f["code"] == "extended-attribute")


def test_xattr_on_the_bundle_directory_fails(nexus, bundle):
    _setfattr(bundle.root, "user.x", "y")
    rc, rep = verify(nexus, bundle)
    assert rc == 1 and "extended-attribute" in codes(rep, "FAIL"), rep["findings"]


def test_file_capability_fails(nexus, bundle):
    r = run("setcap", "cap_net_raw,cap_sys_admin+ep", bundle.path("bin/nexus_cli"))
    assert r.returncode == 0, r.stderr
    rc, rep = verify(nexus, bundle)
    assert rc == 1 and "file-capability" in codes(rep, "FAIL"), rep["findings"]


SELINUX = "security.selinux"


def _label_tree(root, label):
    """Label every entry as an SELinux host does: one label for the tree."""
    for dirpath, dirnames, filenames in os.walk(root):
        for n in filenames + dirnames:
            _setfattr(os.path.join(dirpath, n), SELINUX, label)
    _setfattr(root, SELINUX, label)


def test_one_selinux_label_on_the_whole_tree_passes(nexus, bundle):
    # An SELinux host labels every file; that is the policy's, not data.
    _label_tree(bundle.root, "system_u:object_r:usr_t:s0")
    rc, rep = verify(nexus, bundle)
    assert rc == 0, [f for f in rep["findings"] if f["severity"] == "FAIL"]


@pytest.mark.parametrize("rel,label", [
    ("LICENSE", "system_u:object_r:user_home_t:s0"),       # another label
    ("model/tokenizer/vocab.txt", "c3lzdGVtX3U6b2JqZWN0X3I=:a:b"),  # data, not a label
    ("src/utils.py", "system_u:object_r:usr_t:s0:" + "c" * 300),    # too long
])
def test_a_selinux_label_that_differs_or_carries_data_fails(nexus, bundle, rel, label):
    _label_tree(bundle.root, "system_u:object_r:usr_t:s0")
    _setfattr(bundle.path(rel), SELINUX, label)
    rc, rep = verify(nexus, bundle)
    assert rc == 1 and "extended-attribute" in codes(rep, "FAIL"), rep["findings"]
    assert any(f["path"] == rel for f in rep["findings"] if f["code"] == "extended-attribute")


def test_build_never_copies_xattrs(nexus, tmp_path):
    ws = make_workspace(tmp_path / "ws")
    for rel in ("LICENSE", "README.md", "artifacts/student.onnx",
                "artifacts/tokenizer/vocab.txt", "serving/utils.py", "config/runtime.yaml"):
        _setfattr(ws / rel, "user.hidden", "teacher bytes")
    assert run("setcap", "cap_net_raw+ep", ws / "serving/inference.py").returncode == 0
    out = tmp_path / "b"
    r = _build(nexus, ws, out)
    assert r.returncode == 0, r.stderr
    for dirpath, dirnames, filenames in os.walk(out):
        for n in filenames + dirnames + ["."]:
            assert os.listxattr(os.path.join(dirpath, n), follow_symlinks=False) == []


def test_manifest_strings_are_scanned(nexus, bundle):
    bundle.meta["architecture"] = "DistilledFromTeacher-12L"
    bundle.regen_manifest()
    rc, rep = verify(nexus, bundle)
    assert rc == 1 and "term-in-value" in codes(rep, "FAIL"), rep["findings"]
    assert any(f["path"] == "manifest.json" for f in rep["findings"]
               if f["code"] == "term-in-value")


def test_workspace_can_lower_the_budget_not_raise_it(nexus, tmp_path):
    ws = make_workspace(tmp_path / "ws", extra_yaml="limits: {max_leak_bytes: 512}\n")
    out = tmp_path / "b"
    r = _build(nexus, ws, out)
    assert r.returncode == 1 and "budget-exceeded" in r.stdout + r.stderr, r.stderr
    assert not out.exists()
    ws = make_workspace(tmp_path / "ws2", extra_yaml="limits: {max_leak_bytes: 1MiB}\n")
    r = _build(nexus, ws, out)
    assert r.returncode == 2 and "max_leak_bytes" in r.stderr, r.stderr
    assert not out.exists()
