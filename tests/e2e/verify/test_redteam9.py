"""Red team 9 (issue #22): attacks on what stop 18 changed - small teacher
tensors (the 16 KiB sum of whole copies, the anchor scan), the mantissa
value sample, and the Python audit's new rules.  An insider controls only
the workspace and runs the official `nexus build --key`; the gate is

    nexus verify --strict --require-signature --pubkey RELEASE.pub
                 --teacher artifacts/teacher.onnx --teacher checkpoints/teacher.pt

Cases the gate catches guard against regressions; cases that get through
are strict xfails naming their class and the fix wanted (docs/TRV.md).
"""
import subprocess

import numpy as np
import pytest

import workspace as ws
from .test_redteam7 import signed_build_is_refused
from .test_redteam8 import signed_and_passed

# ------------------------------------------- Python: the encoding cookie
# PEP 263: Python decodes a source file with the codec its first or second
# line names.  The code scan refuses a cookie other than UTF-8 (scan.c
# check_coding), but it splits lines on "\n" only and looks for a comment
# after spaces, tabs and form feeds; Python also ends a line at a lone
# "\r", so a file that starts with "\r" (a blank first line to Python) has
# its cookie on line 2, unseen.  Under unicode_escape the audit reads one
# string literal where Python reads the string, then statements.
STEP = ("\ndef fit(params, loss):\n"
        "    import torch\n"
        "    opt = torch.optim.SGD(params, lr=0.1)\n"
        "    opt.zero_grad()\n"
        "    loss.backward()\n"
        "    opt.step()\n"
        "    return opt\n")


def _escaped(code):
    return "".join(f"\\x{ord(c):02x}" for c in code)


def cookie_file(head, codec, body=ws.UTILS_PY):
    """head with {codec} filled in, body, then a string literal that is
    code to Python under codec."""
    if codec == "unicode_escape":
        hidden = 'DOC = "' + _escaped('"' + STEP + 'DOC2 = "') + '"\n'
    else:   # utf-7: '+ACI-' is '"' and '+AAo-' a newline
        hidden = 'DOC = "+ACI-' + STEP.replace("\n", "+AAo-") + 'DOC2 = +ACI-"\n'
    return head.format(codec=codec) + body + hidden


# each got a signed bundle with an SGD step past the gate before the fix
COOKIES = {
    "cr first line, unicode_escape": ("\r# coding: {codec}\r", "unicode_escape"),
    "cr first line, utf-7": ("\r# coding: {codec}\r", "utf-7"),
    "form feed and cr, unicode_escape": ("\f\r# coding: {codec}\r", "unicode_escape"),
    "empty cookie, then the cookie": ("# coding: , coding: {codec}\n", "unicode_escape"),
    "empty cookie on line 1, cr": ("#coding=\r# vim: coding={codec}\r\n", "utf-7"),
    # a guard: this one was caught before
    "shebang, cr, cookie": ("#!/usr/bin/env python3\r# -*- coding: {codec} -*-\r\n", "utf-7"),
}


def _python_runs_the_step(tmp_path, src):
    p = tmp_path / "probe.py"
    p.write_bytes(src.encode())
    r = subprocess.run(["/usr/bin/python3", "-I", "-c",
                        f"import runpy; g = runpy.run_path({str(p)!r}); print(g['fit'].__name__)"],
                       capture_output=True, text=True, timeout=120)
    return r.stdout.strip() == "fit"


@pytest.mark.parametrize("case", sorted(COOKIES))
def test_source_encoding_cookie_after_a_carriage_return(nexus, release_key, tmp_path, case):
    src = cookie_file(*COOKIES[case])
    assert _python_runs_the_step(tmp_path, src)        # the door is real
    root = ws.make_workspace(tmp_path / "ws", utils_py=src)
    why = signed_build_is_refused(nexus, root, tmp_path / "bundle", release_key)
    assert "encoding" in why or "python-reflective" in why, why


# ------------------------------------- small teacher tensors, re-encoded
# 21 teacher vectors of 768 floats (3 KiB each, 63 KiB in all: four times
# the 16 KiB the sum of whole copies allows) laid in the live dense2
# weight [256, 64] of an embedder, each in a form that is not a whole copy.
# The pattern scan (fingerprint_pattern.c) finds a small tensor only whole
# and byte for byte (or as its float16/bfloat16 cast), and the value sample
# starts at 8 KiB, so each form below carries the vector exactly (or to 16
# bits) while no check compares it.
NV, WIDTH = 21, 768


def small_vectors(seed=21):
    rng = np.random.default_rng(seed)
    return {f"encoder.layer.{i}.output.LayerNorm.bias":
            (rng.standard_normal(WIDTH) / 16).astype(np.float32) for i in range(NV)}


def _one_changed(v):
    w = v.copy()
    w[WIDTH // 2] += np.float32(1.0)       # one element of 768 off: 3068 bytes intact
    return w


def _low_bit(v):
    return (v.view(np.uint32) ^ np.uint32(1)).view(np.float32)


def _rounded(v, bits=16):
    """the mantissa cut to `bits` bits (bfloat16 keeps 7): 5 digits kept"""
    return (v.view(np.uint32) & np.uint32(~((1 << (23 - bits)) - 1) & 0xFFFFFFFF)).view(np.float32)


def _halves(vs):
    """every vector cut in two, the first halves first, then the second"""
    return [v[:WIDTH // 2] for v in vs] + [v[WIDTH // 2:] for v in vs]


def _interleaved(vs):
    """two vectors' elements alternating (a stride of 2 reads each back)"""
    out = []
    for a, b in zip(vs[0::2], vs[1::2]):
        out.append(np.stack([a, b], 1).reshape(-1))
    return out + vs[len(vs) - len(vs) % 2:]


# (per-vector form, or a form of the list); each one's inverse is exact
# except "rounded to 16 mantissa bits" (what bfloat16 storage gives, twice
# over)
SMALL_FORMS = {
    "whole (a guard)": (lambda v: v, None),
    "reversed": (lambda v: v[::-1], None),
    "negated": (lambda v: -v, None),
    "times 3": (lambda v: v * np.float32(3), None),
    "plus 0.5": (lambda v: v + np.float32(0.5), None),
    "one element changed": (_one_changed, None),
    "lowest mantissa bit flipped": (_low_bit, None),
    "rounded to 16 mantissa bits": (_rounded, None),
    "cut in halves": (None, _halves),
    "two interleaved": (None, _interleaved),
}

SMALL_GOT_THROUGH = {
    "reversed", "negated", "times 3", "plus 0.5", "one element changed",
    "lowest mantissa bit flipped", "rounded to 16 mantissa bits", "cut in halves",
    "two interleaved"}


def packed_w2(forms, rng):
    """dense2 [256, 64]: the vectors (flattened, in order), then noise."""
    flat = np.concatenate([np.ravel(f) for f in forms]).astype(np.float32)
    rest = (rng.standard_normal(256 * 64 - flat.size) / 16).astype(np.float32)
    return np.concatenate([flat, rest]).reshape(256, 64)


def small_forms(case, rng):
    per, whole = SMALL_FORMS[case]
    vs = list(small_vectors().values())
    return packed_w2([per(v) for v in vs] if per else whole(vs), rng)


def _weights_caught(nexus, bundle, teacher):
    from verify_helpers import codes, verify
    rc, rep = verify(nexus, bundle, "--teacher", teacher)
    return rc == 1 and codes(rep, "FAIL") & {"teacher-tensor-copied", "teacher-values-copied"}


def _xfail(case, through, reason):
    return (pytest.param(case, marks=pytest.mark.xfail(strict=True, reason=reason(case)))
            if case in through else case)


def _small_reason(case):
    return ("got through (red team 9): small teacher tensors (256 B - 4 KiB) are compared "
            "whole and byte for byte (or as their 16-bit casts) only; a form that is not a "
            "whole copy (" + case + ") of 63 KiB of them passes.  Fix proposed: pool the "
            "small teacher tensors into one value sample (mantissa-keyed, judged on the "
            "pooled sum) and chunk them with signs cleared (fingerprint_small.c, "
            "fingerprint_pattern.c)")


@pytest.mark.parametrize("case", [_xfail(c, SMALL_GOT_THROUGH, _small_reason)
                                  for c in sorted(SMALL_FORMS)])
def test_small_teacher_tensors_in_other_forms(nexus, bundle, tmp_path, case):
    from .test_teacher_small import onnx_teacher, put_student
    teacher = onnx_teacher(tmp_path / "t.onnx", small_vectors())
    put_student(bundle, {"dense2.weight": small_forms(case, np.random.default_rng(9))})
    assert _weights_caught(nexus, bundle, teacher)


def _embedder_workspace(root, w2, teacher):
    """test_quantize's embedder with this dense2 (every weight live), and
    artifacts/teacher.onnx holding `teacher`."""
    from .test_redteam7 import embedder, teacher_onnx
    from test_quantize import EMBED_RT
    rng = np.random.default_rng(5)
    w1 = (rng.standard_normal((64, 256)) / 8).astype(np.float32)
    emb = rng.standard_normal((len(ws.VOCAB), 64)).astype(np.float32)
    root = ws.make_workspace(root, student=embedder(emb, w1, w2), runtime_yaml=EMBED_RT)
    teacher_onnx(root, teacher)
    return root


@pytest.mark.parametrize("case", [_xfail(c, SMALL_GOT_THROUGH, _small_reason)
                                  for c in ("whole (a guard)", "one element changed",
                                            "cut in halves")])
def test_small_teacher_tensors_in_other_forms_signed(nexus, release_key, tmp_path, case):
    """The insider's path: the forms above, live, signed by the official build."""
    root = _embedder_workspace(tmp_path / "ws", small_forms(case, np.random.default_rng(9)),
                               small_vectors())
    why = signed_build_is_refused(nexus, root, tmp_path / "bundle", release_key)
    assert "teacher" in why, why


# ----------------------------------------- a teacher layer, approximately
# The value sample keys on the whole mantissa, so a value changed in its
# lowest bits, or mapped by anything but a power of two, is a value the
# teacher never had; the chunks need bytes.  A 64 KiB teacher layer kept to
# 16 mantissa bits (5 significant digits: a usable copy), or as 3 x + 0.01,
# is live and found by neither.
def _noise(t):
    rng = np.random.default_rng(12)
    return (t * (1 + np.float32(2.0 ** -14) * rng.standard_normal(t.shape))).astype(np.float32)


LAYER_FORMS = {
    "exact (a guard)": lambda t: t,
    "times 4, negated (a guard)": lambda t: t * np.float32(-4),
    "3 x + 0.01": lambda t: t * np.float32(3) + np.float32(0.01),
    "rounded to 16 mantissa bits": _rounded,
    "relative noise 2^-14": _noise,
    "lowest 4 bits cleared": lambda t: _rounded(t, 19),
}
LAYER_GOT_THROUGH = {"3 x + 0.01", "rounded to 16 mantissa bits", "relative noise 2^-14",
                     "lowest 4 bits cleared"}


def _layer_reason(case):
    return ("got through (red team 9): the value sample matches exact mantissas and the "
            "chunks exact bytes, so a teacher layer kept approximately (" + case + ") is "
            "found by neither.  Fix proposed: for a student tensor of a teacher tensor's "
            "size (either order), the correlation of their values (|r| > 0.99 FAILs); "
            "and a sample keyed on the top 12 mantissa bits with neighbours")


@pytest.mark.parametrize("case", [_xfail(c, LAYER_GOT_THROUGH, _layer_reason)
                                  for c in sorted(LAYER_FORMS)])
def test_teacher_layer_kept_approximately(nexus, bundle, tmp_path, case):
    from .test_redteam7 import _teacher
    from .test_teacher_small import onnx_teacher, put_student
    t = _teacher()
    teacher = onnx_teacher(tmp_path / "t.onnx", {"encoder.layer.3.output.dense": t})
    put_student(bundle, {"dense2.weight": LAYER_FORMS[case](t)})
    assert _weights_caught(nexus, bundle, teacher)


@pytest.mark.parametrize("case", [_xfail(c, LAYER_GOT_THROUGH, _layer_reason)
                                  for c in ("exact (a guard)", "rounded to 16 mantissa bits")])
def test_teacher_layer_kept_approximately_signed(nexus, release_key, tmp_path, case):
    from .test_redteam7 import _teacher
    t = _teacher()
    root = _embedder_workspace(tmp_path / "ws", LAYER_FORMS[case](t),
                               {"encoder.layer.3.output.dense": t})
    why = signed_build_is_refused(nexus, root, tmp_path / "bundle", release_key)
    assert "encoder.layer.3.output.dense" in why, why
