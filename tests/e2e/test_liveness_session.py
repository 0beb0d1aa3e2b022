"""Liveness in one ONNX Runtime session (src/runtime/overridable.c): every
checked initializer made overridable, each copy fed as an input.  Its
verdicts must be those of a session per check (`--session-each`, ONNX
Runtime's AddInitializer) in both directions: a dead tensor stays dead (a
product with Sub(x, x), with 1e-30, a NaN tripwire), a live one live (a
float16 weight behind a Cast, which a constant initializer would have
folded), and zeros dead-empty.  The models are swapped into a copy of a
built bundle and checked with --zero-check (the build's form, which reads
no manifest), so a dead one needs no build that would refuse it."""
import json
import shutil

import numpy as np
import pytest

import workspace as ws
from conftest import ROOT, run
from test_trust import build_case, dec_tripwire, each_as_matrix, teacher_layer, with_copy

CLI = ROOT / "build/libexec/nexus/bin/nexus_cli"


def _f16(root):
    w = np.random.default_rng(13).standard_normal((8, 512)).astype(np.float16)
    build_case(root, {"w16": w}, each_as_matrix)


CASES = {  # name: (writes artifacts/student.onnx, {initializer: expected verdict})
    "float16 behind a Cast": (_f16, {"w16": "live"}),
    "times Sub(x, x)": (lambda r: build_case(r, {"w": teacher_layer()}, each_as_matrix, "sub"),
                        {"w": "dead"}),
    "times 1e-30": (lambda r: build_case(r, {"w": teacher_layer()}, each_as_matrix, "tiny"),
                    {"w": "dead"}),
    "NaN tripwire": (lambda r: build_case(r, with_copy(teacher_layer()), dec_tripwire, "const"),
                     {"w": "dead", "w_copy": "dead"}),
    "zeros": (lambda r: build_case(r, {"kb": np.zeros((8, 256), np.float32)}, each_as_matrix,
                                   "sub"), {"kb": "dead-empty"}),
}


@pytest.fixture(scope="module")
def built(nexus, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("live_session")
    out = tmp / "bundle"
    r = run(nexus, "build", ws.make_workspace(tmp / "ws"), "-o", out, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return out


def _verdicts(bundle, *flags):
    r = run(CLI, "liveness", "--zero-check", "--bundle", bundle, *flags)
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert lines and "checked" in lines[-1], r.stdout + r.stderr
    assert lines[-1]["checked"] == lines[-1]["of"] >= 3
    return {x["initializer"]: x["verdict"] for x in lines[:-1]}, r


@pytest.mark.parametrize("case", list(CASES))
def test_one_session_gives_the_verdicts_of_a_session_each(built, tmp_path, case):
    write, want = CASES[case]
    root = ws.make_workspace(tmp_path / "ws")
    write(root)
    bundle = tmp_path / "b"
    shutil.copytree(built, bundle, symlinks=True)
    (bundle / "model").chmod(0o755)
    model = bundle / "model/student_model.onnx"
    model.chmod(0o644)
    model.write_bytes((root / "artifacts/student.onnx").read_bytes())
    one, r1 = _verdicts(bundle)
    each, r2 = _verdicts(bundle, "--session-each")
    # the one session was used, not its fallback
    assert "a session per initializer" not in r1.stderr, r1.stderr
    assert one == each, (one, each)
    for name, verdict in want.items():
        assert one[name] == verdict, (name, one)
    # the model's own weights stay live; the exit says whether one is dead
    others = {k: v for k, v in one.items() if k not in want}
    assert others and set(others.values()) <= {"live", "dead-empty"}, others
    dead = "dead" in want.values()
    assert (r1.returncode, r2.returncode) == ((1, 1) if dead else (0, 0)), r1.stderr
