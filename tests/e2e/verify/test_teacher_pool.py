"""The weights check (TRV-3): the small teacher tensors pooled as windows
of 4 elements keyed on their shape under any a x + b and either order
(src/lib/fingerprint/fingerprint_pool.c, docs/TRV.md "Small teacher
tensors"): the bound of 16 KiB holds for copies in other forms, and
honest students at the teacher's scale - LayerNorm gammas near 1.0,
biases near 0, weights on an int8 grid - imply nothing."""
import numpy as np
import pytest
from onnx import helper

from verify_helpers import codes, verify
from .test_teacher_small import onnx_teacher, put_student, vectors


def _verify(nexus, bundle, teacher):
    rc, rep = verify(nexus, bundle, "--teacher", teacher)
    return rc, rep, codes(rep, "FAIL")


def _pooled(rep):
    return [f for f in rep["findings"] if f["code"] == "teacher-values-copied"
            and "4-element windows of the small teacher tensors" in f["message"]]


def test_the_bound_holds_for_copies_in_another_form(nexus, bundle, tmp_path):
    """5 x 3 KiB of teacher vectors reversed and times -3 (15 KiB, under
    the bound) pass; 6 (18 KiB) fail, the finding naming the sum."""
    vs = list(vectors(6).values())
    teacher = onnx_teacher(tmp_path / "t.onnx", vectors(6))
    form = {f"s{i}": (v[::-1] * np.float32(-3)).copy() for i, v in enumerate(vs)}
    put_student(bundle, dict(list(form.items())[:5]))
    rc, rep, fails = _verify(nexus, bundle, teacher)
    assert rc == 0 and not _pooled(rep), rep["findings"]
    put_student(bundle, form)
    rc, rep, fails = _verify(nexus, bundle, teacher)
    found = _pooled(rep)
    assert rc == 1 and found and found[0]["severity"] == "FAIL", rep["findings"]
    assert "16384-byte bound" in found[0]["message"], found[0]["message"]


def test_float_bits_in_constant_value_ints(nexus, bundle, tmp_path):
    """Canonical ONNX lets a node attribute hold 256 integers: 24 teacher
    vectors as their float32 bits in value_ints (24 KiB) are read."""
    vs = {f"encoder.layer.{i}.attention.output.bias":
          (np.random.default_rng(60 + i).standard_normal(256) / 16).astype(np.float32)
          for i in range(24)}
    teacher = onnx_teacher(tmp_path / "t.onnx", vs)
    import bundle_fixture as bf
    from onnx_smuggling import sink_nodes
    nodes = []
    for name, v in vs.items():
        nodes.append(helper.make_node("Constant", [], [name], name=name + "_c",
                                      value_ints=v.view(np.int32).astype(np.int64).tolist()))
        nodes += sink_nodes(name)
    m = bf.student_model(extra_nodes=nodes)
    bundle.meta["parameters"] = bf.human(bf.parameters(m) + 256 * 24)
    bundle.smuggle("model/student_model.onnx", m.SerializeToString())
    rc, rep, fails = _verify(nexus, bundle, teacher)
    assert rc == 1 and _pooled(rep), rep["findings"]


def _norms(rng, n, width, spread):
    out = {}
    for i in range(n):
        out[f"layer.{i}.LayerNorm.weight"] = (1 + spread * rng.standard_normal(width)).astype(np.float32)
        out[f"layer.{i}.LayerNorm.bias"] = (spread / 2 * rng.standard_normal(width)).astype(np.float32)
        out[f"layer.{i}.output.bias"] = (rng.standard_normal(width) / 16).astype(np.float32)
    return out


@pytest.mark.parametrize("spread", [0.05, 1e-3, 1e-6])
def test_honest_student_at_the_teachers_scale_passes(nexus, bundle, tmp_path, spread):
    """A teacher with 36 small vectors (108 KiB pooled: LayerNorm gammas
    near 1.0, betas and biases near 0) and a student trained from scratch
    with its own of the same shapes and scale, a 1 MiB weight, and a
    weight dequantized from an int8 grid (ratios of small integers): no
    pooled finding.  spread 1e-3: gammas barely moved from 1.0, their
    differences a few hundred float32 steps; 1e-6: a few steps, where
    ratios of small integers collide in runs (18 KiB implied without the
    flat-window rule, measured on a model of the pool in numpy)."""
    teacher = onnx_teacher(tmp_path / "t.onnx", _norms(np.random.default_rng(1), 12, 768, spread))
    rng = np.random.default_rng(2)
    student = _norms(rng, 12, 768, spread)
    student["big"] = (rng.standard_normal((512, 512)) / 16).astype(np.float32)
    student["grid"] = (np.round(rng.standard_normal((256, 256)) * 30).clip(-127, 127)
                       * np.float32(0.01)).astype(np.float32)
    put_student(bundle, student)
    rc, rep, fails = _verify(nexus, bundle, teacher)
    assert not _pooled(rep) and "teacher-values-copied" not in fails, rep["findings"]
    assert rc == 0, rep["findings"]
