"""Python by allow-list (issue 22, item 3): every import of a bundle's src/
resolves to the standard library, the bundle or a declared serving package;
training packages are refused even if declared; nothing is imported,
executed or looked up by a computed name; and the sandboxed import check
shows the code an ordinary interpreter, not the gate's isolation flags."""
import os
import pathlib
import re
import subprocess
import sys

import pytest

from conftest import run
from test_build import build
from verify_helpers import codes, expect_fail, verify
from workspace import INFERENCE_PY, UTILS_PY, make_workspace

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_stdlib_list_is_the_running_pythons():
    """src/lib/scan/pystdlib.h is generated from sys.stdlib_module_names; a python3
    that adds or drops a module must regenerate it (scripts/pystdlib_gen.py)."""
    text = (ROOT / "src/lib/scan/pystdlib.h").read_text()
    listed = re.findall(r'^\t"([^"]+)",$', text, re.M)
    assert listed == sorted(sys.stdlib_module_names), "run scripts/pystdlib_gen.py"
    ver = re.search(r'NX_PY_STDLIB_VERSION "([0-9.]+)"', text).group(1)
    assert ver == "%d.%d" % sys.version_info[:2]


def test_modattr_table_is_the_installed_packages():
    """src/lib/scan/pymodattr.h holds numpy's, onnx's and torch's aliases as
    Debian ships them (scripts/pymodattr_gen.py): the versions it names are
    the installed ones, and numpy's rows are what its modules hold."""
    import importlib
    import types
    import warnings
    text = (ROOT / "src/lib/scan/pymodattr.h").read_text()
    import numpy
    head = text[:text.index("*/")]
    assert f"numpy {numpy.__version__}" in head, "run scripts/pymodattr_gen.py"
    table, runner_table = text.split("nx_py_runner[][2]")
    rows = re.findall(r'^\t\{ "(numpy\.[^"]+)", "([^"]*)" \},$', table, re.M)
    assert len(rows) > 300 and ("numpy.trace", "") in rows
    checked = 0
    for key, target in rows:
        parent, attr = key.rsplit(".", 1)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mod = importlib.import_module(parent)
        except Exception:
            continue   # an alias path, or a module that needs what is not installed
        if not hasattr(mod, attr):
            try:   # a submodule is an attribute once imported
                importlib.import_module(key)
            except Exception:
                continue
        v = getattr(mod, attr)
        assert (v.__name__ if isinstance(v, types.ModuleType) else "") == target, key
        checked += 1
    assert checked > 200
    # nx_py_runner: every numpy module's PytestTester, and nothing else
    from numpy._pytesttester import PytestTester
    runners = dict(re.findall(r'^\t\{ "([^"]+)", "(numpy\._pytesttester\.PytestTester)" \},$',
                              runner_table, re.M))
    assert "numpy.test" in runners and "numpy.linalg.test" in runners
    seen = 0
    for key in runners:
        parent, attr = key.rsplit(".", 1)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mod = importlib.import_module(parent)
        except ImportError:
            continue   # numpy.distutils and f2py need python3-distutils, not on a minimal machine
        assert isinstance(getattr(mod, attr), PytestTester), key
        seen += 1
    assert seen >= 8, seen
    for name in ("numpy", "numpy.fft", "numpy.ma", "numpy.random"):
        mod = importlib.import_module(name)
        for attr in dir(mod):
            if isinstance(getattr(mod, attr, None), PytestTester):
                assert f"{name}.{attr}" in runners, (name, attr)


# -- the gate on a hand-made bundle: one family per class, several spellings ------

UNRESOLVED = [
    "def fit():\n    import sklearn.linear_model\n",
    "class K:\n    import scipy.optimize as so\n",
    "try:\n    import secret_trainer\nexcept ImportError:\n    secret_trainer = None\n",
    "import sys\nif not sys.flags.isolated:\n    from secret_trainer import fit\n",
    "x = 1; import hidden\n",
    "from .. import anything\n",
    "from .missing import f\n",
    "from numpy import *\n",
]
TRAINING = [
    "import onnxruntime.training\n",
    "from onnxruntime import training\n",
    "import onnxruntime as ort\nt = ort.training.api\n",
    "def f():\n    from torch.optim import SGD\n",
    "import torch_optimizer\n",
    "try:\n    import accelerate\nexcept ImportError:\n    pass\n",
    "from transformers import Trainer\n",
    # a declared package that re-exports a training package as an attribute
    "import onnxruntime as ort\no = ort.torch.optim.SGD\n",
    "from onnxruntime import torch as backend\nopt = backend.optim.Adam\n",
    "import onnxruntime\nt = onnxruntime.capi.transformers.Trainer\n",
    # a declared package's attribute named like a training package is judged as it
    "from onnxruntime.tools import torch_optimizer\n",
    "import onnxruntime as ort\na = ort.x.accelerate.Accelerator()\n",
]
DENIED = [
    "import importlib._bootstrap as b\nm = b._gcd_import('x')\n",
    "from importlib.util import spec_from_file_location\n",
    "from importlib import machinery\n",
    "import runpy\n",
    "def f(b):\n    import marshal\n    return marshal.loads(b)\n",
    "import logging.config\nlogging.config.dictConfig({})\n",
    "import subprocess\n",
    "from pydoc import locate\n",
    "import _imp\n",
    # a declared package's attribute that is another module (issue 22, item 1):
    # numpy 1.24's own aliases (src/lib/scan/pymodattr.h), and by name
    "import numpy.ma.timer_comparison as tc\nt = tc.timeit.timeit(s)\n",
    "from numpy.ma.bench import timeit as clock\nclock.Timer(s).timeit()\n",
    "import numpy as np\nx = np.matlib.ctypeslib.as_array(p)\n",
    "import onnxruntime as ort\nort.capi.code.interact()\n",
    "from onnxruntime.tools import pdb\n",
    "import onnxruntime as o\no.x.concurrent.futures.process.mp.reduction.ForkingPickler.loads(b)\n",
    # code given as data through a declared package (red team 8): numpy's
    # PytestTesters run a README's doctests, sympy evaluates a string
    "import numpy as np\nnp.test(tests=[p], extra_argv=['--doctest-glob=*.md'])\n",
    "from numpy.linalg import test as check\ncheck(tests=[p])\n",
    "import numpy.random as r\nr.test()\n",
    "from onnxruntime.tools.symbolic_shape_infer import sympy as sp\nsp.sympify(s)\n",
    "import onnxruntime.tools.symbolic_shape_infer as ssi\nssi.sympy.parsing.sympy_parser.parse_expr(s)\n",
]
REFLECTIVE = [
    "import json\ng = json.__loader__\n",
    "import json\nf = json.JSONDecoder.__init__.__globals__\n",
    "n = ().__class__.__base__.__subclasses__()\n",
    "import json\nm = object.__getattribute__(json, 'x')\n",
    "import sys as _s\nm = _s.modules\n",
    "import sys\nalias = sys\n",
    "import typing\nm = typing.sys.modules\n",
    "import os\nos.system(bytes.fromhex('707974686f6e33').decode() + ' -m fit')\n",
    "import sys\nsys.path.append(b'/opt/tr'.decode())\n",
    "x = eval(s)\n",
    "c = compile(s, 'f', 'exec')\n",
    "getattr(obj, name)()\n",
    "f = globals()['x']\n",
    "import codecs\nb = codecs.builtins\n",
    "s = f\"{__import__('x')}\"\n",
]


@pytest.mark.parametrize("code,srcs", [("import-unresolved", UNRESOLVED),
                                       ("import-training", TRAINING),
                                       ("import-denied", DENIED),
                                       ("python-reflective", REFLECTIVE)],
                         ids=["unresolved", "training", "denied", "reflective"])
def test_verify_refuses(nexus, bundle, code, srcs):
    for src in srcs:
        bundle.smuggle("src/helpers.py", src)
        rep = expect_fail(nexus, bundle, code)
        assert any(f["path"] == "src/helpers.py" and f["code"] == code
                   for f in rep["findings"]), (src, rep["findings"])


def test_verify_follows_modules_across_bundle_files(nexus, bundle):
    """torch is declared and src/helpers.py imports it (fine); another file
    reaches its optimisers through helpers: that file is refused."""
    import bundle_fixture as bf
    bundle.smuggle("config/runtime.yaml", bf.RUNTIME_YAML.replace(
        "python_packages: [onnxruntime, numpy]", "python_packages: [onnxruntime, numpy, torch]"))
    bundle.smuggle("src/helpers.py", "import torch as _t\n\nclass Box:\n    import torch\n")
    for src in ("from . import helpers\nopt = helpers._t.optim.SGD\n",
                "from .helpers import _t\nopt = _t.optim\n",
                "from .helpers import Box\nopt = Box.torch.optim\n"):
        bundle.smuggle("src/other.py", src)
        rep = expect_fail(nexus, bundle, "import-training")
        assert [f["path"] for f in rep["findings"] if f["code"] == "import-training"] == \
            ["src/other.py"], (src, rep["findings"])


# torch declared: the functions that run code given as data (TorchScript,
# C++, fx code, a stmt string) are import-denied, its serving API is not
TORCH_DOORS = [
    "import torch\nm = torch.jit.load(p)\n",
    "from torch.jit import CompilationUnit as CU\ncu = CU(s)\n",
    "from torch.utils.cpp_extension import load_inline\n",
    "import torch\ng = torch.fx.Graph()\n",
    "import torch.utils.benchmark as b\nb.Timer(s).timeit(1)\n",
    "import torch\ne = torch.fx.experimental.symbolic_shapes.sympy.sympify(s)\n",
    # torch.jit's probes pass only called bare (below)
    "import torch\nprobe = torch.jit.is_tracing\n",
    "import torch\nx = torch.jit.is_scripting(s)\n",
]


def test_verify_refuses_torch_code_doors(nexus, bundle):
    import bundle_fixture as bf
    bundle.smuggle("config/runtime.yaml", bf.RUNTIME_YAML.replace(
        "python_packages: [onnxruntime, numpy]", "python_packages: [onnxruntime, numpy, torch]"))
    for src in TORCH_DOORS:
        bundle.smuggle("src/helpers.py", src)
        rep = expect_fail(nexus, bundle, "import-denied")
        assert any(f["path"] == "src/helpers.py" and f["code"] == "import-denied"
                   for f in rep["findings"]), (src, rep["findings"])
    bundle.smuggle("src/helpers.py", (
        "import numpy as np\nimport torch\n\n"
        "def logits(x):\n"
        "    if torch.jit.is_tracing() or torch.jit.is_scripting():\n"
        "        x = np.asarray(x)\n"
        "    with torch.no_grad():\n"
        "        t = torch.from_numpy(np.asarray(x, np.float32))\n"
        "        return torch.nn.functional.softmax(t, -1).numpy()\n"))
    rc, rep = verify(nexus, bundle)
    assert not [f for f in rep["findings"] if f["path"] == "src/helpers.py" and
                f["severity"] != "INFO"], rep["findings"]


def test_verify_serving_idioms_pass(nexus, bundle):
    """No false alarms on what serving code does: the audit's allow-lists
    cover it."""
    bundle.smuggle("src/helpers.py", (
        "from __future__ import annotations\n"
        "import json, os, sys\n"
        "import numpy as np\n"
        "try:\n    from . import utils\nexcept ImportError:\n    import utils\n"
        "from .inference import Engine\n\n"
        "class Cache:\n"
        "    def __init__(self, **kw):\n"
        "        super().__init__()\n"
        "        self.opts = dict(kw)\n"
        "        self._n = getattr(self, 'n', 0)\n\n"
        "def main(argv=None):\n"
        "    import onnxruntime as ort\n"
        "    o = ort.SessionOptions()\n"
        "    p = os.path.join(os.path.dirname(__file__), 'x')\n"
        "    if sys.flags.isolated:\n        pass\n"
        "    print(json.dumps({'p': p, 'v': f'{sys.version_info!r:>{10}}'}), file=sys.stderr)\n"
        "    return np.zeros(3), utils.softmax, Engine, o\n\n"
        "def numeric(x):\n"
        "    import onnxruntime as ort\n"
        "    s = ort.InferenceSession('m.onnx', providers=ort.get_available_providers())\n"
        "    r = np.random.default_rng(0).normal() + np.trace(np.eye(2)) + np.math.sqrt(2)\n"
        "    return np.copy(np.array([np.float32(r)])), np.select([x > 0], [np.exp(x)]), s\n"))
    rc, rep = verify(nexus, bundle)
    assert rc == 0, rep["findings"]


# -- the insider path: only the workspace changes, the official build signs -------

INSIDER = {
    "nested-training-import": ("def _fit(model):\n    import torch.optim as optim\n"
                               "    return optim.SGD(model.parameters(), lr=0.1)\n",
                               "import-training"),
    "declared-package-submodule": ("def _fit():\n    from onnxruntime.training import api\n"
                                   "    return api\n", "import-training"),
    "skipped-when-isolated": ("import sys\nif not sys.flags.isolated:\n"
                              "    import secret_trainer\n", "import-unresolved"),
    "importlib-internals": ("import importlib._bootstrap as _b\n"
                            "def _load(n):\n    return _b._gcd_import(n)\n", "import-denied"),
    "computed-name-lookup": ("import json\n"
                             "def _load(n):\n    return getattr(json, n)\n", "python-reflective"),
    "module-table-alias": ("import sys\n_mods = sys\n"
                           "def _get(n):\n    return _mods.modules[n]\n", "python-reflective"),
    "string-execution": ("import os\n"
                         "def _train():\n    os.system('python3 -m trainer')\n",
                         "python-reflective"),
}


@pytest.fixture(scope="module")
def release_key(tmp_path_factory, nexus):
    d = tmp_path_factory.mktemp("key")
    assert run(nexus, "keygen", "-o", d / "rel").returncode == 0
    return d / "rel.key"


@pytest.mark.parametrize("name", sorted(INSIDER))
def test_insider_workspace_build_with_release_key_refused(nexus, tmp_path, release_key, name):
    src, code = INSIDER[name]
    ws = make_workspace(tmp_path / "ws", inference_py=INFERENCE_PY + "\n" + src)
    r = build(nexus, ws, tmp_path / "b", "--key", release_key)
    assert r.returncode == 1, r.stderr
    assert code in r.stderr, r.stderr
    assert "serving/inference.py" in r.stderr   # the workspace file to edit
    assert not (tmp_path / "b").exists()
    assert not [p for p in os.listdir(tmp_path) if ".nexus-stage." in p]


def test_insider_clean_workspace_still_builds(nexus, tmp_path, release_key):
    """The control: the same workspace without the insider's lines builds."""
    ws = make_workspace(tmp_path / "ws")
    r = build(nexus, ws, tmp_path / "b", "--key", release_key)
    assert r.returncode == 0, r.stderr


# -- TRV-5: the import check hides its isolation flags ---------------------------

def sandbox_ok():
    return os.path.exists("/usr/bin/bwrap") and subprocess.run(
        ["/usr/bin/bwrap", "--unshare-all", "--ro-bind", "/", "/", "/usr/bin/true"]).returncode == 0


@pytest.mark.skipif(not sandbox_ok(), reason="bubblewrap cannot run here")
@pytest.mark.parametrize("probe", [
    "if not sys.flags.isolated:\n",
    "if not (sys.flags.no_site or sys.flags.ignore_environment):\n",
    "if '-I' not in sys.orig_argv:\n",
    "if len(sys.argv) < 2:\n",
], ids=["isolated", "no-site", "orig-argv", "argv"])
def test_import_check_code_sees_ordinary_flags(nexus, tmp_path, probe):
    """A module that reaches outside the bundle only when it is not run by
    the gate: the gate must run that branch, so the reach fails the import."""
    utils = UTILS_PY + "import sys\n" + probe + "    open('/opt/nexus-not-there/x').read()\n"
    ws = make_workspace(tmp_path / "ws", utils_py=utils)
    r = build(nexus, ws, tmp_path / "b")
    assert r.returncode == 1, r.stderr
    assert "functional-import-io" in r.stderr, r.stderr
    assert not (tmp_path / "b").exists()
