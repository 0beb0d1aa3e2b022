"""The code check (TRV-2): the Python import audit against code that reaches
training modules. (Regrouped by check from the red-team files by
scripts/dev/regroup_tests.py.)
"""
import numpy as np
import pytest

import workspace as ws
from onnx_smuggling import FAKE_PACKAGE
from token_payloads import FIT, POSITIONAL, official_build_refuses, pickled_exec
from verify_helpers import expect_fail
from conftest import run
from insider_doors import CASES
from insider_doors import CLEAN
from insider_doors import FINDING
import io
import sys


@pytest.mark.parametrize("fake", FAKE_PACKAGE)
def test_bundle_module_posing_as_a_training_package(nexus, tmp_path, fake, sandbox_backend):
    """The import check puts src/ on sys.path so that `import utils` works;
    a src/torch.py that is a package over src/ then answered `import
    torch.optim` with src/optim.py, and the undeclared training import
    passed TRV-5."""
    from test_build import build
    from workspace import UTILS_PY, make_workspace
    ws = make_workspace(tmp_path / "ws", utils_py=UTILS_PY + "import torch.optim\n",
                        config={"source": "{dir: serving, files: [__init__.py, inference.py, "
                                          "utils.py, torch.py, optim.py]}"})
    (ws / "serving/torch.py").write_text(FAKE_PACKAGE[fake])
    (ws / "serving/optim.py").write_text('"""Optimisers."""\n')
    r = build(nexus, ws, tmp_path / "b")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "dynamic-import" in r.stderr or "functional-import" in r.stderr, r.stderr
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("src", [
    "import sys, types\nsys.modules['torch'] = types.ModuleType('torch')\n",
    "import sys\ndel sys.modules['json']\n",
    "import os\n__path__ = [os.path.dirname(__file__)]\n",
    "import os\n__path__.append('/opt/training')\n",
    "import os\nglobals()['__path__'] = ['/opt/training']\n",
    "import os\nglobals()['__pa' + 'th__'] = ['/opt/training']\n",
])
def test_module_table_written(nexus, bundle, src):
    """Writing sys.modules or a module's __path__ decides what a later
    import finds, by a name or a place the import check does not see."""
    bundle.smuggle("src/helpers.py", src)
    expect_fail(nexus, bundle, "dynamic-import")


def test_module_table_read_is_refused(nexus, bundle):
    """Reading sys.modules even by a literal name is refused (issue 22): a
    framework imports its training submodules itself (torch/__init__ imports
    torch.optim), so sys.modules['torch.optim'] reaches one with no import
    statement for the import audit to refuse."""
    bundle.smuggle("src/helpers.py", "import sys\nm = sys.modules['json']\n"
                                     "def f(x):\n    return sys.modules['os'].path.join(x, 'a')\n")
    expect_fail(nexus, bundle, "python-reflective")


@pytest.mark.parametrize("name", sorted(POSITIONAL))
def test_insider_pickle_by_position_refused(nexus, tmp_path, release_key_file, name):
    blob = pickled_exec(FIT)
    code = f"BLOB = {blob!r}\n" + POSITIONAL[name]
    root = ws.make_workspace(tmp_path / "ws", utils_py=ws.UTILS_PY + "\n" + code)
    official_build_refuses(nexus, root, tmp_path, release_key_file, "python-reflective")


def test_pickle_by_position_does_run_code(tmp_path):
    """The case is real: numpy runs the pickle's callable (here a harmless
    assignment in place of the optimiser step)."""
    import io
    marker = {}
    blob = pickled_exec("import builtins; builtins._rt5 = 42")
    try:
        np.load(io.BytesIO(blob), None, True)
    except Exception:
        pass   # exec returns None, not an array: numpy complains after running it
    import builtins
    assert getattr(builtins, "_rt5", None) == 42, marker
    del builtins._rt5


@pytest.mark.parametrize("name", sorted(CASES))
def test_insider_code_door_refused(nexus, tmp_path, release_key_file, name):
    root = ws.make_workspace(tmp_path / "ws", utils_py=ws.UTILS_PY + "\n" + CASES[name])
    official_build_refuses(nexus, root, tmp_path, release_key_file, FINDING[name])


def test_numpy_doors_run_code(tmp_path, monkeypatch):
    """Each numpy door imports by name or runs code: a harmless module and
    statement stand in for the training step."""
    import builtins
    pytest.importorskip("numpy.compat")
    mod = tmp_path / "rt6_mod.py"
    mod.write_text("import builtins\nbuiltins._rt6_file = 1\n")
    from numpy.compat import npy_load_module
    npy_load_module("rt6_mod", str(mod))
    assert getattr(builtins, "_rt6_file", None) == 1
    ns = {}
    from numpy.testing import runstring
    runstring("x = 6 * 7", ns)
    assert ns["x"] == 42
    assert "mailbox" not in sys.modules or pytest.skip("mailbox already imported")
    monkeypatch.chdir(tmp_path)
    np.info("nothing", toplevel="mailbox", output=io.StringIO())
    assert "mailbox" in sys.modules      # imported by name from a string
    del builtins._rt6_file


def test_npzfile_positional_unpickles():
    """NpzFile's third argument is allow_pickle: an object array loads."""
    buf = io.BytesIO()
    np.savez(buf, a=np.array([{"k": 1}], dtype=object))
    buf.seek(0)
    assert np.lib.npyio.NpzFile(buf, False, True)["a"][0] == {"k": 1}


def test_plain_numpy_serving_code_passes(nexus, tmp_path, release_key_file):
    root = ws.make_workspace(tmp_path / "ws", utils_py=ws.UTILS_PY + "\n" + CLEAN)
    out = tmp_path / "out" / "nexus_bundle_v1"
    r = run(nexus, "build", root, "-o", out, "--key", release_key_file, timeout=300)
    assert r.returncode == 0 and out.exists(), r.stdout[-3000:] + r.stderr[-3000:]


# Red team 11's PytestTester through a module value (test_redteam11.py,
# TESTER_DOORS), in the other places a module can be put: each door runs
# README.md's doctest (code the audit never reads) through numpy's `test`.
def _door(body):
    from .test_redteam11 import RUN
    import re
    run = "def run(m, p):\n    return m.test(" + RUN + ")\n\n\n" if re.search(r"\brun\b", body) else ""
    return ("import functools\nimport numpy as np\nfrom numpy import linalg\n\n\n" + run +
            body.replace("RUN", RUN))


MODULE_VALUE_DOORS = {
    "a tuple": "MODS = (np.fft, np.linalg)\n\n\ndef serve(p):\n    return MODS[1].test(RUN)\n",
    "a dict value": "MODS = {'la': np.linalg}\n\n\ndef serve(p):\n"
                    "    return MODS['la'].test(RUN)\n",
    "a default argument": "def serve(p, m=np.linalg):\n    return m.test(RUN)\n",
    "a return value": "def mod():\n    return np.linalg\n\n\ndef serve(p):\n"
                      "    return mod().test(RUN)\n",
    "a lambda": "mod = lambda: np.linalg\n\n\ndef serve(p):\n    return mod().test(RUN)\n",
    "functools.partial": "def serve(p):\n    return functools.partial(run, np.linalg)(p)\n",
    "np.testing": "def serve(p):\n    return run(np.testing, p)\n",
    "np.lib": "def serve(p):\n    return run(np.lib, p)\n",
    "a class attribute": "class V:\n    m = np.linalg\n\n\ndef serve(p):\n"
                         "    return V.m.test(RUN)\n",
    "from numpy import linalg": "def serve(p):\n    return run(linalg, p)\n",
}


def test_module_value_doors_are_real(tmp_path):
    """each door runs README.md's doctest in a fresh interpreter"""
    import subprocess
    from .test_redteam11 import README_DOCTEST, tester_opens
    tester_opens()
    for k, (case, body) in enumerate(sorted(MODULE_VALUE_DOORS.items())):
        d = tmp_path / str(k)
        d.mkdir()
        (d / "helpers.py").write_text(_door(body))
        (d / "README.md").write_text(README_DOCTEST)
        subprocess.run([sys.executable, "-c", "import helpers; helpers.serve('README.md')"],
                       cwd=d, capture_output=True, timeout=120)
        assert (d / "ran").read_text() == "7", case


@pytest.mark.parametrize("case", sorted(MODULE_VALUE_DOORS))
def test_module_value_doors_refused(nexus, bundle, case):
    """a module in a tuple, a dict, a default, returned, under a lambda or
    partial, a class attribute, np.testing, np.lib, from-imported: refused
    as a value, and `.test` of what the audit does not follow refused"""
    from verify_helpers import codes, verify
    bundle.smuggle("src/helpers.py", _door(MODULE_VALUE_DOORS[case]))
    rc, rep = verify(nexus, bundle)
    assert rc == 1 and codes(rep, "FAIL") & {"python-reflective", "import-denied"}, \
        [f["message"] for f in rep["findings"] if f["severity"] != "INFO"]


# Review C (stop 21): a module imported in a class body, handed on by
# getattr, setattr or a case pattern's keyword, then `.test` on a bundle
# root or on a holder named like an import.  Each runs README.md's doctest.
def _review_c_doors():
    from .test_redteam11 import RUN
    cls = "\n\n\nclass _A:\n    import numpy.linalg as la\n\n\n"
    tail = "\n\n\ndef serve(p):\n    return %s.test(" + RUN + ")\n"
    return {
        "self-import bundle root": "import helpers" + cls + "M = getattr(_A, 'la')" +
                                   tail % "helpers.M",
        "holder named like an import": "import json" + cls +
                                       "class H:\n    json = getattr(_A, 'la')" + tail % "H.json",
        "setattr holder named like an import": "import json" + cls + "class H:\n    pass\n\n\n"
                                               "setattr(H, 'json', getattr(_A, 'la'))" +
                                               tail % "H.json",
        "bundle global set through a parameter": "import helpers\n\n\nM = None\n\n\n"
                                                 "def put(m):\n    global M\n    M = m" + cls +
                                                 "put(getattr(_A, 'la'))" + tail % "helpers.M",
        "case pattern keyword": "import json" + cls + "def get():\n    match _A:\n"
                                "        case object(la=m):\n            return m\n\n\n"
                                "class H:\n    json = get()" + tail % "H.json",
        "a stdlib module's attribute written": "import json" + cls +
                                               "json.m = getattr(_A, 'la')" + tail % "json.m",
    }


def test_review_c_doors_are_real(tmp_path):
    """each door runs README.md's doctest in a fresh interpreter"""
    import subprocess
    from .test_redteam11 import README_DOCTEST, tester_opens
    tester_opens()
    for k, (case, src) in enumerate(sorted(_review_c_doors().items())):
        d = tmp_path / str(k)
        d.mkdir()
        (d / "helpers.py").write_text(src)
        (d / "README.md").write_text(README_DOCTEST)
        subprocess.run([sys.executable, "-c", "import helpers; helpers.serve('README.md')"],
                       cwd=d, capture_output=True, timeout=120)
        assert (d / "ran").exists() and (d / "ran").read_text() == "7", case


@pytest.mark.parametrize("case", sorted(_review_c_doors()))
def test_review_c_doors_refused(nexus, bundle, case):
    """the import in the class body is refused, and `.test` on the holder"""
    from verify_helpers import codes, verify
    bundle.smuggle("src/helpers.py", _review_c_doors()[case])
    rc, rep = verify(nexus, bundle)
    msgs = [f["message"] for f in rep["findings"] if f["severity"] != "INFO"]
    assert rc == 1 and "python-reflective" in codes(rep, "FAIL"), msgs
    assert any("class body" in m for m in msgs), msgs
    assert any("'test'" in m or ".test'" in m for m in msgs), msgs


def test_review_c_doors_signed(nexus, release_key, tmp_path):
    """a signed build with the door is refused too"""
    from .test_redteam7 import signed_build_is_refused
    from .test_redteam11 import README_DOCTEST
    src = _review_c_doors()["holder named like an import"]
    root = ws.make_workspace(tmp_path / "ws", utils_py=ws.UTILS_PY + "\n\n" + src)
    (root / "README.md").write_text((root / "README.md").read_text() + "\n" + README_DOCTEST)
    why = signed_build_is_refused(nexus, root, tmp_path / "bundle", release_key)
    assert "python-reflective" in why, why


@pytest.mark.parametrize("src", [
    "import argparse\n\n\ndef f(argv):\n    p = argparse.ArgumentParser()\n"
    "    p.add_argument('--test', action='store_true')\n    args = p.parse_args(argv)\n"
    "    if args.test:\n        return 1\n    return 0\n",
    "class R:\n    def __init__(self):\n        self.trace = None\n",
    "import numpy as np\n\n\ndef f():\n    return np.random is None\n",
    "import numpy as np\n\n\ndef f():\n    return getattr(np, 'linalg', None) is not None\n",
])
def test_review_c_tested_or_written_attributes_pass(nexus, bundle, src):
    """a runner's name or a module only tested, compared or written is no
    value handed on: these honest lines pass"""
    from verify_helpers import verify
    bundle.smuggle("src/helpers.py", src)
    rc, rep = verify(nexus, bundle)
    msgs = [f["message"] for f in rep["findings"] if f["severity"] == "FAIL"]
    assert not [m for m in msgs if "helpers.py" in m or "refused" in m], msgs


# audit12: a module reaches a value past the module-value rule: through a
# declared package the module table does not hold (review C's run(u.np)),
# as an operand of `or`, or as a class annotation dataclasses.fields()
# hands out.  The last two run README.md's doctest here.
def _audit12_doors():
    from .test_redteam11 import RUN
    return {
        "onnxruntime's np": "import onnxruntime.tools.onnx_model_utils as u\n\n\n"
                            "def run(m, p):\n    return m\n\n\n"
                            "def serve(p):\n    return run(u.np, p)\n",
        "or operand": "import numpy as np\n\n\ndef serve(p):\n"
                      "    m = None or np.linalg or None\n    return m.test(" + RUN + ")\n",
        "dataclass annotation": "import dataclasses\nimport numpy as np\n\n\n"
                                "@dataclasses.dataclass\nclass A:\n    m: np.linalg = None\n\n\n"
                                "def serve(p):\n    m = dataclasses.fields(A)[0].type\n"
                                "    return m.test(" + RUN + ")\n",
    }


def test_audit12_doors_are_real(tmp_path):
    """the doors that need only numpy run README.md's doctest"""
    import subprocess
    from .test_redteam11 import README_DOCTEST, tester_opens
    tester_opens()
    for k, case in enumerate(["or operand", "dataclass annotation"]):
        d = tmp_path / str(k)
        d.mkdir()
        (d / "helpers.py").write_text(_audit12_doors()[case])
        (d / "README.md").write_text(README_DOCTEST)
        subprocess.run([sys.executable, "-c", "import helpers; helpers.serve('README.md')"],
                       cwd=d, capture_output=True, timeout=120)
        assert (d / "ran").exists() and (d / "ran").read_text() == "7", case


@pytest.mark.parametrize("case", sorted(_audit12_doors()))
def test_audit12_module_values_refused(nexus, bundle, case):
    """the module is refused where it becomes a value, not only at `.test`"""
    from verify_helpers import codes, verify
    bundle.smuggle("src/helpers.py", _audit12_doors()[case])
    rc, rep = verify(nexus, bundle)
    msgs = [f["message"] for f in rep["findings"] if f["severity"] != "INFO"]
    assert rc == 1 and "python-reflective" in codes(rep, "FAIL"), msgs
    assert any("used as a value" in m for m in msgs), msgs
