"""Sixth red-team pass on `nexus verify` (issue #22), as the insider.

Each case changes only the workspace (here: the serving code), runs the
official `nexus build --key` with the release key, and requires that
nothing is published: the build's self-verification is the gate (`verify
--strict --require-signature --teacher ...` under the signed policy), so a
case the build signs is a bundle the gate passes.

The classes (docs/TRV.md, "Python by allow-list"):
- doors in numpy, which every serving bundle declares, that import by
  computed name or run code given as data: `np.lookfor(module=NAME)` and
  `np.info(toplevel=NAME)` import NAME (and its submodules),
  `numpy.compat.npy_load_module(name, path)` runs a file by path,
  `numpy.testing.runstring`/`measure` exec a string, and `NpzFile`'s
  allow_pickle given by position unpickles;
- a training framework reached as an attribute of a declared package that
  is not itself listed as one (`onnxruntime.transformers` modules import
  torch at the top), so a training step ran with no `torch` declared;
- the autograd calls of a training step (`loss.backward()`,
  `opt.zero_grad()`) on an object the audit cannot type.
Each got through the signed build before this pass.
"""
import io
import json
import sys

import numpy as np
import pytest

import workspace as ws
from conftest import run
from test_redteam5 import official_build_refuses, release_key  # noqa: F401 (fixture)


# The module name is computed, so no literal names it ("to" + "rch.op" + "tim").
NAME = 'NAME = "to" + "rch.op" + "tim"\n'
STEP = 'SRC = "import torch\\nopt = torch.optim.SGD(PARAMS, lr=0.1)\\nopt.step()\\n"\n'

NUMPY_DOORS = {
    # numpy.lib.utils.lookfor: __import__(module), then its submodules
    "lookfor": NAME + "import numpy as np\ndef fit():\n    np.lookfor('step', module=NAME)\n",
    "lookfor-from": NAME + "from numpy import lookfor\ndef fit():\n    lookfor('x', NAME)\n",
    # numpy.lib.utils.info -> _makenamedict(toplevel): __import__(toplevel)
    "info": NAME + "import numpy as np\ndef fit():\n    np.info('SGD', toplevel=NAME)\n",
    "lib-utils": NAME + "import numpy.lib.utils as u\ndef fit():\n    u.lookfor('x', NAME)\n",
    # numpy.compat.npy_load_module: SourceFileLoader(name, path).load_module()
    "npy-load-module": "import numpy.compat as c\ndef fit(path):\n"
                       "    return c.npy_load_module('fit', path)\n",
    "npy-load-module-from": "from numpy.compat import npy_load_module as load\n"
                            "def fit(path):\n    return load('fit', path)\n",
    "npy-load-module-attr": "import numpy as np\ndef fit(path):\n"
                            "    return np.compat.py3k.npy_load_module('fit', path)\n",
    # numpy.testing.runstring(astr, dict): exec(astr, dict); measure execs too
    "runstring": STEP + "import numpy.testing as nt\ndef fit(ns):\n    nt.runstring(SRC, ns)\n",
    "measure": STEP + "import numpy as np\ndef fit():\n    np.testing.measure(SRC, 1)\n",
    "testing-from": STEP + "from numpy.testing import runstring\n"
                   "def fit(ns):\n    runstring(SRC, ns)\n",
}

POSITIONAL_PICKLE = {
    # NpzFile(fid, own_fid, allow_pickle): the third argument unpickles
    "npzfile": "import numpy as np\ndef fit(f):\n"
               "    return np.lib.npyio.NpzFile(f, False, True)['a']\n",
    "npzfile-from": "from numpy.lib.npyio import NpzFile\ndef fit(f):\n"
                    "    return NpzFile(f, False, 1)['a']\n",
}

# A training step with no `torch` declared (python_packages: numpy,
# onnxruntime): onnxruntime's transformers tools import torch at their top,
# so the package hands it out as an attribute.
TRAINING = {
    "ort-transformers-torch":
        "from onnxruntime.transformers import torch_onnx_export_helper as h\n"
        "def fit(x, y):\n"
        "    model = h.torch.nn.Linear(8, 2)\n"
        "    loss = ((model(x) - y) ** 2).mean()\n"
        "    loss.backward()\n"
        "    with h.torch.no_grad():\n"
        "        for p in model.parameters():\n"
        "            p -= 0.01 * p.grad\n",
    "ort-transformers-from":
        "from onnxruntime.transformers.torch_onnx_export_helper import torch as T\n"
        "def fit(model):\n    return T.zeros(3)\n",
    "ort-benchmark-helper":
        "import onnxruntime.transformers.benchmark_helper as b\n"
        "def fit(w):\n    return b.torch.tensor(w)\n",
    # the step itself, on objects the audit cannot type
    "backward": "def fit(model, x, lr):\n"
                "    loss = model(x).sum()\n"
                "    loss.backward()\n"
                "    for p in model.parameters():\n"
                "        p.data -= lr * p.grad\n",
    "zero-grad": "def fit(opt, loss):\n    opt.zero_grad()\n    loss.sum().backward()\n"
                 "    opt.step()\n",
}

CASES = {**NUMPY_DOORS, **POSITIONAL_PICKLE, **TRAINING}
# an import is import-denied, an attribute chain or call python-reflective
FINDING = {
    "lookfor": "python-reflective",
    "lookfor-from": "import-denied",
    "info": "import-denied",
    "lib-utils": "import-denied",
    "npy-load-module": "import-denied",
    "npy-load-module-from": "import-denied",
    "npy-load-module-attr": "import-denied",
    "runstring": "import-denied",
    "measure": "import-denied",
    "testing-from": "import-denied",
    "npzfile": "python-reflective",
    "npzfile-from": "python-reflective",
    "ort-transformers-torch": "python-reflective",
    "ort-transformers-from": "import-denied",
    "ort-benchmark-helper": "python-reflective",
    "backward": "python-reflective",
    "zero-grad": "python-reflective",
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_insider_code_door_refused(nexus, tmp_path, release_key, name):
    root = ws.make_workspace(tmp_path / "ws", utils_py=ws.UTILS_PY + "\n" + CASES[name])
    official_build_refuses(nexus, root, tmp_path, release_key, FINDING[name])


# -- the doors are real: numpy (Debian 12's 1.24) runs what they are given ---

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


# -- no false alarms: serving code that uses numpy and logging plainly ------

CLEAN = ("import io\nimport logging\nimport numpy as np\n"
         "LOG = logging.getLogger(__name__)\n"
         "def post(logits, blob):\n"
         "    LOG.info('logits %s', np.asarray(logits).shape)\n"
         "    arr = np.load(io.BytesIO(blob), allow_pickle=False)\n"
         "    e = np.exp(np.asarray(logits) - np.max(logits))\n"
         "    return arr, e / e.sum(), np.lib.stride_tricks.sliding_window_view(e, 1)\n")


def test_plain_numpy_serving_code_passes(nexus, tmp_path, release_key):
    root = ws.make_workspace(tmp_path / "ws", utils_py=ws.UTILS_PY + "\n" + CLEAN)
    out = tmp_path / "out" / "nexus_bundle_v1"
    r = run(nexus, "build", root, "-o", out, "--key", release_key, timeout=300)
    assert r.returncode == 0 and out.exists(), r.stdout[-3000:] + r.stderr[-3000:]


# -- a check that ran out of time is not a pass --------------------------------
# Liveness replaces initializers one by one, in a random order, within a
# 60 s budget, and what it had not reached was an INFO (`liveness-sampled`).
# An insider who makes the model slow to check - 300 live bias vectors and
# a graph that takes seconds per run (measured before the fix: 138 s build,
# published, the 64 KiB dead tensor intact) - hides a dead initializer
# among those left.  NEXUS_LIVENESS_BUDGET_MS (lower only) stands in for the
# slow graph here, so that the test takes seconds, not minutes.

def dead_among_many(root, raw, nlive=300):
    from onnx import helper, numpy_helper
    from test_insider import student_with
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(np.frombuffer(raw, np.float32).reshape(-1, 8), "cdata")]
    nodes = [helper.make_node("Identity", ["pooled0"], ["p1"]),       # a zero at run time
             helper.make_node("Sub", ["pooled0", "p1"], ["z0"]),
             helper.make_node("ReduceMean", ["z0"], ["z"], keepdims=0),
             helper.make_node("Mul", ["cdata", "z"], ["cz"]),
             helper.make_node("ReduceMean", ["cz"], ["cm"], axes=[0], keepdims=1),
             helper.make_node("Add", ["pooled0", "cm"], ["y0"])]
    for i in range(nlive):                   # live: each shifts the pooled vector
        b = rng.standard_normal((2, 8)).astype(np.float32) * 0.05
        inits.append(numpy_helper.from_array(b, f"bias{i}"))
        nodes += [helper.make_node("ReduceMean", [f"bias{i}"], [f"bm{i}"], axes=[0], keepdims=0),
                  helper.make_node("Add", [f"y{i}", f"bm{i}"], [f"y{i + 1}"])]
    nodes.append(helper.make_node("Identity", [f"y{nlive}"], ["pooled"]))
    student_with(root, extra_inits=inits, extra_nodes=nodes)


def dead_among_many_decode(root):
    import onnx
    from onnx import numpy_helper
    m = onnx.load_from_string((root / "artifacts/student.onnx").read_bytes())
    t = next(t for t in m.graph.initializer if t.name == "cdata")
    return numpy_helper.to_array(t).tobytes()


def test_insider_liveness_out_of_time_refused(nexus, tmp_path, release_key, monkeypatch):
    from test_redteam5 import teacher_bytes
    root = ws.make_workspace(tmp_path / "ws")
    raw = teacher_bytes()
    dead_among_many(root, raw)
    assert dead_among_many_decode(root) == raw
    monkeypatch.setenv("NEXUS_LIVENESS_BUDGET_MS", "1500")
    # refused either way: the dead tensor found in time, or the check not finished
    out = tmp_path / "out" / "nexus_bundle_v1"
    out.parent.mkdir()
    r = run(nexus, "build", root, "-o", out, "--key", release_key, timeout=300)
    assert r.returncode == 1 and not out.exists(), r.stdout[-3000:] + r.stderr[-3000:]
    assert "liveness-sampled" in r.stdout + r.stderr or "dead-initializer" in r.stdout + r.stderr



# -- bytes the JSON parse throws away -------------------------------------------
# tokenizer.json was charged by its grammar, which reads parsed values: the
# whitespace between tokens was free (64 KiB after the commas of a 22-token
# tokenizer.json cost 126 bytes of the budget, and the build copies the file
# as it is).  Now its layout - whitespace, escapes, number spellings that
# are not the writer's - is charged too.

def _split_ws(raw, alphabet):
    """raw as a string over a whitespace alphabet of 2 or 4 characters
    (low-order bits of each byte first)."""
    per = {2: 1, 4: 2}[len(alphabet)]
    bits = np.unpackbits(np.frombuffer(raw, np.uint8), bitorder="little").reshape(-1, per)
    sym = bits @ (1 << np.arange(per))
    return "".join(alphabet[v] for v in sym)


def _join_ws(text, alphabet, nbytes):
    per = {2: 1, 4: 2}[len(alphabet)]
    sym = np.array([alphabet.index(c) for c in text[:nbytes * 8 // per]], dtype=np.uint8)
    bits = ((sym[:, None] >> np.arange(per)) & 1).astype(np.uint8).reshape(-1)
    return np.packbits(bits, bitorder="little").tobytes()


def _outside_strings(text):
    """The characters of a JSON text outside its strings, in order."""
    out, in_str, esc = [], False, False
    for c in text:
        if in_str:
            in_str = not (c == '"' and not esc)
            esc = c == "\\" and not esc
        elif c == '"':
            in_str = True
        else:
            out.append(c)
    return "".join(out)


def enc_ws(alphabet, where):
    def enc(root, raw):
        p = root / "artifacts/tokenizer/tokenizer.json"
        tj = json.loads(p.read_text())
        payload = _split_ws(raw, alphabet)
        if where == "end":                   # after the closing brace
            text = json.dumps(tj, separators=(",", ":")) + payload
        else:                                # spread after every comma
            text = json.dumps(tj, separators=(",\x01", ":"))
            n = text.count("\x01")
            step = -(-len(payload) // n)
            chunks = iter(payload[i:i + step] for i in range(0, len(payload), step))
            text = "".join(c if c != "\x01" else "," + next(chunks, "")
                           for c in text.replace(",\x01", "\x01"))
        assert json.loads(text) == tj        # the tokenizer the runtime reads is unchanged
        p.write_bytes(text.encode())

    def dec(root):
        text = (root / "artifacts/tokenizer/tokenizer.json").read_bytes().decode()
        ws_only = "".join(c for c in _outside_strings(text) if c in alphabet)
        return _join_ws(ws_only, alphabet, PAYLOAD)
    return enc, dec


LAYOUT = {
    "commas-4": enc_ws(" \t\n\r", "commas"),
    "commas-2": enc_ws(" \t", "commas"),
    "trailing-2": enc_ws("\n\r", "end"),
}
PAYLOAD = 64 << 10


@pytest.mark.parametrize("name", sorted(LAYOUT))
def test_insider_teacher_bytes_in_json_layout_refused(nexus, tmp_path, release_key, name):
    from test_redteam5 import teacher_bytes
    enc, dec = LAYOUT[name]
    root = ws.make_workspace(tmp_path / "ws")
    raw = teacher_bytes()
    enc(root, raw)
    assert dec(root) == raw, "the case's own decoder must get the teacher bytes back"
    official_build_refuses(nexus, root, tmp_path, release_key, "budget-exceeded")
