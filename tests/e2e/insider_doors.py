"""Helpers of the end-to-end tests (from test_redteam6.py, by
scripts/dev/regroup_tests.py).
"""
import json

import numpy as np


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


CLEAN = ("import io\nimport logging\nimport numpy as np\n"
         "LOG = logging.getLogger(__name__)\n"
         "def post(logits, blob):\n"
         "    LOG.info('logits %s', np.asarray(logits).shape)\n"
         "    arr = np.load(io.BytesIO(blob), allow_pickle=False)\n"
         "    e = np.exp(np.asarray(logits) - np.max(logits))\n"
         "    return arr, e / e.sum(), np.lib.stride_tricks.sliding_window_view(e, 1)\n")


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
