"""A teacher+student module exported by torch.onnx.export as one graph
(issue 15, item 9).

torch stores equal initializers once, so the student's zero bias becomes
Identity(<teacher's zero bias>).  The build resolves that alias by content;
a teacher tensor the student really computes with is still refused.
"""
import json

import onnx
import pytest

from conftest import run
from test_build import build
from smuggling import sandbox_ok
from workspace import VOCAB, make_workspace

torch = pytest.importorskip("torch")
nn = torch.nn

pytestmark = pytest.mark.skipif(not sandbox_ok(), reason="bubblewrap cannot run here")


class Tower(nn.Module):
    """Zero biases, as many initialisations leave them: the hidden one is
    4 KiB (judged by its contents), the head's 8 bytes (by its size)."""

    def __init__(self, dim, emb=None):
        super().__init__()
        self.emb = emb if emb is not None else nn.Embedding(len(VOCAB), dim)
        self.hid = nn.Linear(dim, 1024)
        self.fc = nn.Linear(1024, 2)
        with torch.no_grad():
            self.hid.bias.zero_()
            self.fc.bias.zero_()

    def forward(self, ids):
        return self.fc(torch.relu(self.hid(self.emb(ids).mean(1))))


class Distill(nn.Module):
    """The training module: both towers, the student's logits first."""

    def __init__(self, share=None):
        super().__init__()
        torch.manual_seed(0)
        self.teacher = Tower(64)
        self.student = Tower(64, emb=self.teacher.emb if share == "module" else None)
        if share == "copy":  # the student's embedding initialised as the teacher's
            with torch.no_grad():
                self.student.emb.weight.copy_(self.teacher.emb.weight)

    def forward(self, input_ids, attention_mask):
        return self.student(input_ids), self.teacher(input_ids)


def export(module, path):
    ids = torch.tensor([[2, 5, 6, 3]])
    axes = {"input_ids": {0: "b", 1: "s"}, "attention_mask": {0: "b", 1: "s"},
            "logits": {0: "b"}, "teacher_logits": {0: "b"}}
    torch.onnx.export(module.eval(), (ids, torch.ones_like(ids)), str(path),
                      input_names=["input_ids", "attention_mask"],
                      output_names=["logits", "teacher_logits"], dynamic_axes=axes,
                      opset_version=13)
    return onnx.load(str(path))


def combined_workspace(tmp_path, share=None, external=False):
    module = Distill(share)
    model = export(module, tmp_path / "combined.onnx")
    ws = make_workspace(tmp_path / "ws",
                        config={"student": "{model: artifacts/student.onnx, outputs: [logits]}"},
                        student=model.SerializeToString())
    if external:  # as torch saves a model over 2 GB: tensors of 1 KiB or more outside
        onnx.save(model, str(ws / "artifacts/student.onnx"), save_as_external_data=True,
                  all_tensors_to_one_file=True, location="student.onnx.data",
                  size_threshold=1024)
    return module, model, ws


@pytest.mark.parametrize("external", [False, True], ids=["inline", "external-data"])
def test_deduplicated_zero_bias_builds_and_matches(nexus, tmp_path, external):
    module, model, ws = combined_workspace(tmp_path, external=external)
    # the premise: torch did store the student's bias under a teacher name
    aliases = [n for n in model.graph.node if n.op_type == "Identity"]
    assert sorted((list(n.input), list(n.output)) for n in aliases) == \
        [(["teacher.fc.bias"], ["student.fc.bias"]), (["teacher.hid.bias"], ["student.hid.bias"])]
    out = tmp_path / "out"
    r = build(nexus, ws, out)
    assert r.returncode == 0, r.stderr
    student = onnx.load(str(out / "model/student_model.onnx"))
    names = [t.name for t in student.graph.initializer]
    assert {"student.fc.bias", "student.hid.bias"} <= set(names)
    assert not any("teacher" in n for n in names)
    assert not [n for n in student.graph.node if n.op_type == "Identity"]
    texts = ["free money, click now", "lunch at noon tomorrow?", "win a prize!"]
    cli = out / "bin/nexus_cli"
    args = [a for t in texts for a in ("--text", t)]
    ids = run(cli, "tokenize", "--bundle", out, *args)
    got = run(cli, "run", "--bundle", out, *args)
    assert ids.returncode == 0 and got.returncode == 0, ids.stderr + got.stderr
    for line, res in zip(ids.stdout.splitlines(), got.stdout.splitlines()):
        t = torch.tensor([json.loads(line)])
        with torch.no_grad():
            want, _ = module(t, torch.ones_like(t))
        assert json.loads(res)["outputs"]["logits"] == pytest.approx(want[0].tolist(), abs=1e-5)


@pytest.mark.parametrize("share,why", [
    ("module", "which names 'teacher'"),        # the student reads teacher.emb.weight itself
    ("copy", "computes with teacher weights"),  # an equal, non-constant tensor torch shared
])
def test_teacher_tensor_the_student_computes_with_is_refused(nexus, tmp_path, share, why):
    _, _, ws = combined_workspace(tmp_path, share)
    r = build(nexus, ws, tmp_path / "out")
    assert r.returncode == 1, r.stderr
    assert "teacher.emb.weight" in r.stderr and why in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()
