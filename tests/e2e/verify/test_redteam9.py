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
