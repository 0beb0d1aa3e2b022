"""`nexus build` against workspace inputs shaped to slip teacher files or code
into a bundle. (Regrouped by check from the red-team files by
scripts/dev/regroup_tests.py.)
"""
import os

import pytest

from test_build import build
from workspace import make_workspace


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
