"""Red team 9 (issue #22): attacks on what stop 18 changed - small teacher
tensors (the 16 KiB sum of whole copies, the anchor scan), the mantissa
value sample, and the Python audit's new rules.  An insider controls only
the workspace and runs the official `nexus build --key`; the gate is

    nexus verify --strict --require-signature --pubkey RELEASE.pub
                 --teacher artifacts/teacher.onnx --teacher checkpoints/teacher.pt

Cases the gate catches guard against regressions; cases that get through
are strict xfails naming their class and the fix wanted (docs/TRV.md).
"""
import json
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

# caught since: the small teacher tensors pooled as windows keyed on their
# shape under any a x + b and either order, read at strides 1 and 2
# (fingerprint_pool.c)
SMALL_GOT_THROUGH = set()


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
# caught since: the correlation of same-size tensors (fingerprint_corr.c)
LAYER_GOT_THROUGH = set()


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


# ---------------------- small teacher tensors in other types and places
def _value_floats(tensors):
    """Constant nodes with the vectors as `value_floats` (a list attribute:
    canonical ONNX allows 256 values), each used by a node."""
    from onnx import helper
    from onnx_smuggling import sink_nodes
    nodes = []
    for name, v in tensors.items():
        nodes.append(helper.make_node("Constant", [], [name], name=name + "_c",
                                      value_floats=v.tolist()))
        nodes += sink_nodes(name)
    return nodes


def _int8(v):
    """symmetric int8, one scale a vector (what a quantizer writes)"""
    return np.round(v / np.abs(v).max() * 127).astype(np.int8)


OTHER_TYPES = {
    # 24 vectors of 256 floats (1 KiB each, 24 KiB)
    "Constant value_floats": lambda vs: ({}, _value_floats(vs)),
    "widened to float64": lambda vs: ({f"w{i}": v.astype(np.float64)
                                       for i, v in enumerate(vs.values())}, []),
    "int8, a scale each": lambda vs: ({f"q{i}": _int8(v) for i, v in enumerate(vs.values())}, []),
    "float32 bytes 2 bytes into float16 tensors": lambda vs: (
        {f"h{i}": np.frombuffer(b"\x00\x3c" + v.tobytes(), np.float16)
         for i, v in enumerate(vs.values())}, []),
}
# "widened to float64" and "int8, a scale each" caught since: the
# correlation of same-size tensors (fingerprint_corr.c); "Constant
# value_floats" since: the attribute numbers are read by the pool scan
# (fingerprint_pool.c)
OTHER_GOT_THROUGH = set()


def _other_reason(case):
    return ("got through (red team 9): small teacher tensors are recorded as their bytes "
            "and 16-bit casts only; " + case + " is none of them (24 x 1 KiB, over the 16 KiB "
            "sum).  Fix proposed: record the float64 widening, and judge int8 vectors by "
            "their correlation with the teacher's small tensors of their length")


@pytest.mark.parametrize("case", [_xfail(c, OTHER_GOT_THROUGH, _other_reason)
                                  for c in sorted(OTHER_TYPES)])
def test_small_teacher_tensors_in_other_types(nexus, bundle, tmp_path, case):
    import bundle_fixture as bf
    from onnx_smuggling import sink_nodes
    from onnx import numpy_helper
    from .test_teacher_small import onnx_teacher
    vs = {f"encoder.layer.{i}.attention.output.bias":
          (np.random.default_rng(30 + i).standard_normal(256) / 16).astype(np.float32)
          for i in range(24)}
    teacher = onnx_teacher(tmp_path / "t.onnx", vs)
    tensors, nodes = OTHER_TYPES[case](vs)
    inits = [numpy_helper.from_array(np.zeros((), np.float32), "zero")]
    for name, a in tensors.items():
        inits.append(numpy_helper.from_array(a, name))
        nodes += sink_nodes(name, to_float=a.dtype != np.float32)
    m = bf.student_model(extra_nodes=nodes, extra_initializers=inits)
    bundle.meta["parameters"] = bf.human(bf.parameters(m) + (256 * 24 if not tensors else 0))
    bundle.smuggle("model/student_model.onnx", m.SerializeToString())
    assert _weights_caught(nexus, bundle, teacher)


# ------------------------------- Python: attributes read by a class pattern
# `case object(backward=step):` binds step = subject.backward: an attribute
# read spelled as a keyword, which the audit judged as a keyword argument
# (only allow_pickle and the like); and a positional class pattern reads
# the attributes its class's __match_args__ names (an allowed dunder).
# With `.grad` and `.data` (inference code reads both) that is a training
# step: autograd plus a hand-written SGD update.  Fixed in pyaudit.c
# (a case clause's keywords are attributes) and pyaudit_lists.c
# (__match_args__ is no longer an allowed dunder; a @dataclass writes it
# unseen, so positional class sub-patterns are refused, pyaudit_bind.c).  Same for a loss's
# grad_fn: its nodes, called along next_functions, are a backward pass in
# 15 lines with exactly autograd's gradients (refused by name now).
UPDATE = ("    for p in model.parameters():\n"
          "        p.data.add_(p.grad, alpha=-lr)\n"
          "        p.grad = None\n"
          "    return loss\n")
GRAPH_STEP = (
    "def fit(model, x, lr):\n"
    "    loss = (model(x) ** 2).sum()\n"
    "    todo = [(loss.grad_fn, loss.new_ones(loss.shape))]\n"
    "    while todo:     # backward through the autograd graph's nodes\n"
    "        node, g = todo.pop()\n"
    "        if node is None:\n"
    "            continue\n"
    "        if hasattr(node, 'variable'):\n"
    "            v = node.variable\n"
    "            g = g.sum_to_size(v.shape)\n"
    "            v.grad = g if v.grad is None else v.grad + g\n"
    "            continue\n"
    "        outs = node(g)\n"
    "        outs = outs if isinstance(outs, tuple) else (outs,)\n"
    "        for (nxt, _), o in zip(node.next_functions, outs):\n"
    "            if o is not None:\n"
    "                todo.append((nxt, o))\n" + UPDATE)
PATTERN_DOORS = {
    "class pattern keyword":
        "def fit(model, x, lr):\n    loss = model(x).sum()\n"
        "    match loss:\n        case object(backward=step):\n            step()\n" + UPDATE,
    "__match_args__ and an instance check that always holds":
        "class Any(type):\n    def __instancecheck__(cls, x):\n        return True\n\n\n"
        "class Step(metaclass=Any):\n    __match_args__ = ('backward',)\n\n\n"
        "def fit(model, x, lr):\n    loss = model(x).sum()\n"
        "    match loss:\n        case Step(step):\n            step()\n" + UPDATE,
    # no word of autograd: the loss's grad_fn nodes called one by one
    "grad_fn nodes called by hand": GRAPH_STEP,
    # review (#22): a dataclass writes __match_args__ where no name shows it
    "a dataclass's __match_args__":
        "import dataclasses\n\n\nclass Any(type):\n    def __instancecheck__(cls, x):\n"
        "        return True\n\n\n@dataclasses.dataclass\nclass Step(metaclass=Any):\n"
        "    backward: object\n\n\n"
        "def fit(model, x, lr):\n    loss = model(x).sum()\n"
        "    match loss:\n        case Step(step):\n            step()\n" + UPDATE,
}


@pytest.mark.parametrize("door", sorted(PATTERN_DOORS))
def test_training_step_through_a_class_pattern(nexus, release_key, tmp_path, door):
    root = ws.make_workspace(tmp_path / "ws", utils_py=ws.UTILS_PY + "\n\n" + PATTERN_DOORS[door])
    why = signed_build_is_refused(nexus, root, tmp_path / "bundle", release_key)
    assert "python-reflective" in why, why


@pytest.mark.parametrize("door", sorted(PATTERN_DOORS))
def test_class_pattern_step_does_train(door):
    """The doors are real: one SGD step moves the weights."""
    torch = pytest.importorskip("torch")
    ns = {}
    exec(compile(PATTERN_DOORS[door], "<door>", "exec"), ns)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    x = torch.randn(16, 4)
    losses = [float(ns["fit"](model, x, 0.01)) for _ in range(5)]
    assert losses[-1] < losses[0] / 2, losses


# ------------------------------------------------ ONNX strings as a channel
# 64 KiB of random data as base32 words in places of the model no node
# reads; each must be refused (charged to the leak budget, or not
# canonical).
def _b32_words(nbytes, width):
    import base64
    text = base64.b32encode(np.random.default_rng(17).bytes(nbytes)).decode().lower()
    return [text[i:i + width] for i in range(0, len(text), width)]


def _opset_domains(m):
    from onnx import helper
    for w in _b32_words(65536, 200):
        m.opset_import.append(helper.make_opsetid("ai." + w, 1))


def _function_names(m):
    """model-local functions, never called, named by the data"""
    from onnx import helper
    for w in _b32_words(65536, 200):
        m.functions.append(helper.make_function(
            "local", w, ["x"], ["y"], [helper.make_node("Identity", ["x"], ["y"])],
            [helper.make_opsetid("", 13)]))


def _graph_input_names(m):
    """extra graph inputs (optional to a caller) named by the data"""
    from onnx import TensorProto, helper
    for w in _b32_words(65536, 200):
        m.graph.input.append(helper.make_tensor_value_info(w, TensorProto.FLOAT, [1]))


STRING_PLACES = {"opset_import domains": _opset_domains,
                 "unused model-local function names": _function_names,
                 "unused graph inputs' names": _graph_input_names}


@pytest.mark.parametrize("place", sorted(STRING_PLACES))
def test_onnx_strings_no_node_reads(nexus, bundle, place):
    import bundle_fixture as bf
    from verify_helpers import codes, verify, with_model
    m = bf.student_model()
    STRING_PLACES[place](m)
    with_model(bundle, m)
    rc, rep = verify(nexus, bundle)
    assert rc == 1 and "budget-exceeded" in codes(rep, "FAIL"), \
        [f["message"] for f in rep["findings"]][-6:]


# ------------------- teacher tensors of 4-8 KiB: neither small nor sampled
# A tensor from 4 KiB is judged alone (bytes, chunks) and left out of the
# small-tensor sum, and the value sample needs 32 samples (8 KiB): so a
# 4 KiB vector (a LayerNorm or bias of a 1024-wide teacher, BERT-large has
# about 200 of them) in any form but its bytes is found by nothing.
MID_FORMS = {
    "whole (a guard)": lambda v: v,
    "negated": lambda v: -v,
    "reversed": lambda v: v[::-1],
    "one element changed": _one_changed,
}
# "negated" and "reversed" caught since (vectors of the teacher's length):
# the correlation of same-size tensors (fingerprint_corr.c); "one element
# changed" by its rank correlation
MID_GOT_THROUGH = set()


def _mid_reason(case):
    return ("got through (red team 9): 16 teacher vectors of 4 KiB (64 KiB), " + case +
            ": too big for the small-tensor sum, too small for the value sample (8 KiB), "
            "no chunks in common.  Fix proposed: the small-tensor rules up to 8 KiB (or the "
            "pooled value sample for every teacher tensor under 8 KiB)")


@pytest.mark.parametrize("case", [_xfail(c, MID_GOT_THROUGH, _mid_reason)
                                  for c in sorted(MID_FORMS)])
def test_teacher_vectors_of_four_kib(nexus, bundle, tmp_path, case):
    from .test_teacher_small import onnx_teacher, put_student
    rng = np.random.default_rng(40)
    vs = {f"encoder.layer.{i}.output.LayerNorm.weight":
          (1 + rng.standard_normal(1024) / 16).astype(np.float32) for i in range(16)}
    teacher = onnx_teacher(tmp_path / "t.onnx", vs)
    put_student(bundle, {f"s{i}": MID_FORMS[case](v) for i, v in enumerate(vs.values())})
    assert _weights_caught(nexus, bundle, teacher)


# -------------------------------------------- the allow list is workspace
# nexus.yaml is the insider's: `allow_shared_tensors` names a student
# tensor that may equal a teacher tensor, and the build records it in the
# signed policy.  The gate believed a signed record, so a whole 64 KiB
# teacher layer (or every small one) passed with an INFO
# (teacher-tensor-allowed), whatever the reason said (red team 9).  Now the
# record is believed only for the names the verifier accepts itself
# (--accept-shared): the deployer, not the workspace, decides.
def test_teacher_layer_on_the_allow_list(nexus, release_key, tmp_path):
    from .test_redteam7 import _teacher
    t = _teacher()
    root = _embedder_workspace(tmp_path / "ws", t, {"encoder.layer.3.output.dense": t})
    with open(root / "nexus.yaml", "a") as f:
        f.write("allow_shared_tensors:\n  - {name: dense2.weight, reason: "
                "initialised from the base model's output projection}\n")
    why = signed_build_is_refused(nexus, root, tmp_path / "bundle", release_key)
    assert "encoder.layer.3.output.dense" in why, why
    assert "--accept-shared dense2.weight" in why, why
    # the deployer's own acceptance is what allows it
    from conftest import run
    from .test_redteam7 import TEACHERS
    _, pub = release_key
    teachers = [a for t in TEACHERS if (root / t).exists() for a in ("--teacher", root / t)]
    assert teachers
    ok = run(nexus, "verify", "--json", "--strict", "--require-signature", "--pubkey", pub,
             *teachers, "--accept-shared", "dense2.weight", tmp_path / "bundle", timeout=600)
    rep = json.loads(ok.stdout)
    assert ok.returncode == 0, [f for f in rep["findings"] if f["severity"] != "INFO"]
    assert any(f["code"] == "teacher-tensor-allowed" for f in rep["findings"]), rep["findings"]


# ------------------- allow_pickle where no call the audit reads shows it
# The audit refuses allow_pickle given as a keyword (any spelling of the
# word), by position, or from a list; but np.load kept as a value and
# called elsewhere, or given a mapping built at run time, unpickles the
# bundle's data: a pickle that defines the optimiser step (FIT); so does
# an NpzFile whose allow_pickle attribute is set.  Fixed in
# pyaudit_names.c (such a function is only ever called, never with **)
# and pyaudit_lists.c (the attribute allow_pickle is refused); and so
# does an NpzFile re-made by `z.__init__(...)` or `type(z)(...)` with
# allow_pickle by position: neither is called on self/cls/super() now;
# nor kept (`g = z.__init__`, `C = z.__class__`), nor a local named self
# (pyaudit_bind.c: self and cls are bound only as a def's first parameter).
UNPICKLE_DOORS = {
    "np.load aliased": "import io\nimport numpy as np\nLOAD = np.load\n"
                       "def fit():\n    return LOAD(io.BytesIO(BLOB), None, True)\n",
    "a computed mapping": "import io\nimport numpy as np\n"
                          f"KEY = {list(b'allow_pickle')!r}\n"
                          "def fit():\n    kw = dict(zip([bytes(KEY).decode()], [True]))\n"
                          "    return np.load(io.BytesIO(BLOB), **kw)\n",
    "an NpzFile's attribute": "import io\nimport numpy as np\n"
                              "def fit(npz):\n    z = np.load(io.BytesIO(npz))\n"
                              "    z.allow_pickle = True\n    return z['a']\n",
    "an NpzFile re-initialised": "import io\nimport numpy as np\n"
                                 "def fit(npz):\n    z = np.load(io.BytesIO(npz))\n"
                                 "    z.__init__(io.BytesIO(npz), False, True)\n"
                                 "    return z['a']\n",
    "the class of an NpzFile, called": "import io\nimport numpy as np\n"
                                       "def fit(npz):\n    z = np.load(io.BytesIO(npz))\n"
                                       "    return type(z)(io.BytesIO(npz), False, True)['a']\n",
    # review (#22): the same reached other than by a call's next token,
    # or through a local named self, which the audit trusted by name
    "an NpzFile's __init__ kept": "import io\nimport numpy as np\n"
                                  "def fit(npz):\n    z = np.load(io.BytesIO(npz))\n"
                                  "    g = z.__init__\n    g(io.BytesIO(npz), False, True)\n"
                                  "    return z['a']\n",
    "the class of an NpzFile, kept": "import io\nimport numpy as np\n"
                                     "def fit(npz):\n    z = np.load(io.BytesIO(npz))\n"
                                     "    C = z.__class__\n"
                                     "    return C(io.BytesIO(npz), False, True)['a']\n",
    "an NpzFile named self": "import io\nimport numpy as np\n"
                             "def fit(npz):\n    self = np.load(io.BytesIO(npz))\n"
                             "    return type(self)(io.BytesIO(npz), False, True)['a']\n",
    "a default argument": "import io\nfrom numpy.lib import format as F\n"
                          "def fit(read=F.read_array):\n    return read(io.BytesIO(BLOB), True)\n",
}


@pytest.mark.parametrize("door", sorted(UNPICKLE_DOORS))
def test_unpickling_through_a_call_the_audit_does_not_read(nexus, release_key, tmp_path, door):
    from token_payloads import FIT, pickled_exec
    code = f"BLOB = {pickled_exec(FIT)!r}\n" + UNPICKLE_DOORS[door]
    root = ws.make_workspace(tmp_path / "ws", utils_py=ws.UTILS_PY + "\n\n" + code)
    why = signed_build_is_refused(nexus, root, tmp_path / "bundle", release_key)
    assert "python-reflective" in why, why


def test_unpickling_door_is_real():
    """numpy runs the pickle's callable through the alias (a harmless
    assignment in place of the step)."""
    import builtins
    from token_payloads import pickled_exec
    ns = {"BLOB": pickled_exec("import builtins; builtins._rt9 = 9")}
    exec(UNPICKLE_DOORS["a computed mapping"], ns)
    try:
        ns["fit"]()
    except Exception:
        pass   # exec returns None, not an array: numpy complains after running it
    assert getattr(builtins, "_rt9", None) == 9
    del builtins._rt9


# ------------------------- under half of each teacher layer, kept exact
# The value sample calls a tensor a copy when it holds half of the
# teacher tensor's samples; chunks need 4 KiB of bytes in a row.  Three
# 64 KiB teacher layers, each with 40% of its elements kept exact at
# random positions (the rest noise), carry 77 KiB of teacher values in
# place, and each is far above its decoys.
# 40% got through before the implied-bytes sum (test_teacher_partial.py)
FRACTIONS = {"40% kept": (0.40, False), "60% kept (a guard)": (0.60, False)}


@pytest.mark.parametrize("case", [
    pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=(
        "got through (red team 9): the value sample's threshold is half of a teacher "
        "tensor's samples; 40% of three 64 KiB layers (77 KiB) kept exact in place passes.  "
        "Fix proposed: judge by significance against the decoys alone and count the bytes "
        "a hit rate implies (hits x rate x 4) toward a bound summed over tensors")))
    if through else c for c, (_, through) in sorted(FRACTIONS.items())])
def test_under_half_of_each_teacher_layer(nexus, bundle, tmp_path, case):
    from .test_teacher_small import onnx_teacher, put_student
    frac = FRACTIONS[case][0]
    rng = np.random.default_rng(50)
    layers = {f"encoder.layer.{i}.intermediate.dense.weight":
              (rng.standard_normal((256, 64)) / 8).astype(np.float32) for i in range(3)}
    teacher = onnx_teacher(tmp_path / "t.onnx", layers)
    students = {}
    for i, t in enumerate(layers.values()):
        keep = rng.random(t.shape) < frac
        students[f"w{i}"] = np.where(keep, t, (rng.standard_normal(t.shape) / 8)
                                     .astype(np.float32))
    put_student(bundle, students)
    assert _weights_caught(nexus, bundle, teacher)
