"""Hugging Face cache and DVC layouts (issue 21, item 4): links resolved only
into the directories source.follow_links_within declares, content copied,
the manifest the same as for a plain copy; DVC's hard links accepted."""
import hashlib
import json
import os
import shutil

from conftest import run
from workspace import make_workspace

SOURCE = "{dir: serving, files: [__init__.py, inference.py, utils.py]%s}"


def env(**kw):
    e = dict(os.environ, SOURCE_DATE_EPOCH="1700000000")
    e.update(kw)
    return e


def hf_cache(hub, files):
    """models--org--student/snapshots/<rev>/NAME -> ../../blobs/<sha256>, as
    huggingface_hub lays a download out; returns the snapshot folder."""
    repo = hub / "models--org--student"
    (repo / "blobs").mkdir(parents=True)
    snap = repo / "snapshots" / ("0123abcd" * 5)
    snap.mkdir(parents=True)
    for name, data in files.items():
        digest = hashlib.sha256(data).hexdigest()
        (repo / "blobs" / digest).write_bytes(data)
        (snap / name).symlink_to(f"../../blobs/{digest}")
    return snap


def test_hugging_face_cache_builds_like_a_plain_copy(nexus, tmp_path):
    plain = make_workspace(tmp_path / "plain")
    r = run(nexus, "build", plain, "-o", tmp_path / "b_plain", env=env())
    assert r.returncode == 0, r.stderr

    ws = make_workspace(tmp_path / "ws", config={"source": SOURCE % (
        ", follow_links_within: [~/hub]")})
    tok = ws / "artifacts" / "tokenizer"
    snap = hf_cache(tmp_path / "home" / "hub", {
        "student.onnx": (ws / "artifacts/student.onnx").read_bytes(),
        "tokenizer.json": (tok / "tokenizer.json").read_bytes(),
        "vocab.txt": (tok / "vocab.txt").read_bytes()})
    # the student a link to the snapshot's file, the tokenizer folder a link
    # to the snapshot folder: the two ways a workspace points into a cache
    (ws / "artifacts/student.onnx").unlink()
    (ws / "artifacts/student.onnx").symlink_to(snap / "student.onnx")
    shutil.rmtree(tok)
    tok.symlink_to(snap)
    r = run(nexus, "build", ws, "-o", tmp_path / "b_hf", env=env(HOME=str(tmp_path / "home")))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "b_hf/manifest.json").read_bytes() == \
        (tmp_path / "b_plain/manifest.json").read_bytes()
    # content copied, never linked
    for p in (tmp_path / "b_hf").rglob("*"):
        assert not p.is_symlink(), p
        if p.is_file():
            assert p.stat().st_nlink == 1, p

    # without the declaration: refused, and the message says what to declare
    (ws / "nexus.yaml").write_text((ws / "nexus.yaml").read_text().replace(
        ", follow_links_within: [~/hub]", ""))
    r = run(nexus, "build", ws, "-o", tmp_path / "b2", env=env(HOME=str(tmp_path / "home")))
    assert r.returncode == 3
    assert "follow_links_within" in r.stderr and "artifacts/student.onnx" in r.stderr

    # a root that does not hold the target: refused too
    (ws / "nexus.yaml").write_text((ws / "nexus.yaml").read_text().replace(
        "utils.py]", "utils.py], follow_links_within: [serving]"))
    r = run(nexus, "build", ws, "-o", tmp_path / "b3", env=env(HOME=str(tmp_path / "home")))
    assert r.returncode == 3
    assert "outside every source.follow_links_within" in r.stderr
    assert not (tmp_path / "b2").exists() and not (tmp_path / "b3").exists()


def test_dvc_hard_links_accepted_when_declared(nexus, tmp_path):
    plain = make_workspace(tmp_path / "plain")
    r = run(nexus, "build", plain, "-o", tmp_path / "b_plain", env=env())
    assert r.returncode == 0, r.stderr
    ws = make_workspace(tmp_path / "ws")
    cache = ws / ".dvc" / "cache" / "ab"
    cache.mkdir(parents=True)
    os.link(ws / "artifacts/student.onnx", cache / "cdef0123")
    r = run(nexus, "build", ws, "-o", tmp_path / "b1", env=env())
    assert r.returncode == 3 and "hard links" in r.stderr and "follow_links_within" in r.stderr
    (ws / "nexus.yaml").write_text((ws / "nexus.yaml").read_text().replace(
        "utils.py]", "utils.py], follow_links_within: [.dvc/cache]"))
    r = run(nexus, "build", ws, "-o", tmp_path / "b2", env=env())
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "b2/manifest.json").read_bytes() == \
        (tmp_path / "b_plain/manifest.json").read_bytes()
    assert (tmp_path / "b2/model/student_model.onnx").stat().st_nlink == 1


def renamed_student():
    """The test workspace's student with its inputs named tokens and mask."""
    import onnx
    from workspace import student_onnx
    m = onnx.load_from_string(student_onnx())
    rename = {"input_ids": "tokens", "attention_mask": "mask"}
    for i in m.graph.input:
        i.name = rename.get(i.name, i.name)
    for node in m.graph.node:
        node.input[:] = [rename.get(x, x) for x in node.input]
    return m.SerializeToString()


def test_student_inputs_maps_roles_to_the_models_names(nexus, tmp_path):
    ws = make_workspace(tmp_path / "ws", student=renamed_student())
    r = run(nexus, "build", ws, "-o", tmp_path / "b0", env=env())
    assert r.returncode != 0
    assert "'tokens'" in r.stderr and "student.inputs" in r.stderr, r.stderr
    ws = make_workspace(tmp_path / "ws2", student=renamed_student(),
                        config={"student": "{model: artifacts/student.onnx, "
                                           "inputs: {ids: tokens, mask: mask}}"})
    r = run(nexus, "build", ws, "-o", tmp_path / "b", env=env())
    assert r.returncode == 0, r.stderr
    assert 'inputs: {ids: "tokens", mask: "mask"}' in \
        (tmp_path / "b/config/runtime.yaml").read_text()
    cli = tmp_path / "b/bin/nexus_cli"
    r = run(cli, "run", "--text", "free money", "--text", "lunch at noon tomorrow?")
    assert r.returncode == 0, r.stderr
    assert [json.loads(x)["label"] in ("ham", "spam") for x in r.stdout.splitlines()] == [True] * 2
    # the same answers as the model with the default names
    plain = make_workspace(tmp_path / "plain")
    assert run(nexus, "build", plain, "-o", tmp_path / "bp", env=env()).returncode == 0
    r2 = run(tmp_path / "bp/bin/nexus_cli", "run", "--text", "free money", "--text",
             "lunch at noon tomorrow?")
    assert r2.stdout == r.stdout
