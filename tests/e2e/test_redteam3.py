"""Third red-team pass on `nexus verify`.

Each test is one attack that got a PASS/WARN from verify before its fix,
found by reading the checks' code.  Like test_redteam.py, attacks that
re-generate the manifest (Bundle.smuggle) get past integrity by
construction, so what is asserted is that another check names them.
"""
import json

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import bundle_fixture as bf
from test_verify_adversarial import (bundle, codes, expect_fail,  # noqa: F401
                                     runtime, verify)


def floats(n, seed=7):
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32)


# -- protobuf by hand: encodings the onnx package never writes -----------------

def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(num, wire, payload):
    """One protobuf field: payload is bytes for LEN (2), an int otherwise."""
    tag = varint(num << 3 | wire)
    if wire == 2:
        return tag + varint(len(payload)) + payload
    if wire == 0:
        return tag + varint(payload)
    if wire == 5:
        return tag + int(payload).to_bytes(4, "little")
    return tag + int(payload).to_bytes(8, "little")


def tensor_bytes(name, dtype, dims, payload_fields):
    """A TensorProto: dims (1), data_type (2), name (8), then payload fields."""
    out = b"".join(field(1, 0, d) for d in dims) + field(2, 0, dtype)
    return out + field(8, 2, name.encode()) + b"".join(payload_fields)


def model_with_initializer(model, tensor):
    """model's bytes with one more main-graph initializer given as bytes.
    Fields may come in any order, so the initializer is appended to the
    graph and the graph to the model."""
    graph = model.graph.SerializeToString() + field(5, 2, tensor)
    rest = type(model)()
    rest.CopyFrom(model)
    rest.ClearField("graph")
    return rest.SerializeToString() + field(7, 2, graph)


def sink_nodes(name, to_float=True):
    """Nodes that use initializer `name` and discard it (x a zero computed
    from the input as the difference of two equal nodes - Sub(x, x) with
    one input named twice is a constant to constant-subgraph - so that no
    node computes from constants only): the tensor is referenced, and only
    the fingerprint (or, where the selftest runs, liveness) can name it
    (docs/TRV.md)."""
    nodes = []
    src = name
    if to_float:
        nodes.append(helper.make_node("Cast", [name], [name + "_f"], name=name + "_cast",
                                      to=TensorProto.FLOAT))
        src = name + "_f"
    nodes += [helper.make_node("Cast", ["input_ids"], [name + "_ids"], name=name + "_ids",
                               to=TensorProto.FLOAT),
              helper.make_node("ReduceSum", [name + "_ids"], [name + "_a"], name=name + "_a",
                               keepdims=0),
              helper.make_node("ReduceSum", [name + "_ids"], [name + "_b"], name=name + "_b",
                               keepdims=0),
              helper.make_node("Sub", [name + "_a", name + "_b"], [name + "_0"],
                               name=name + "_0"),
              helper.make_node("Mul", [src, name + "_0"], [name + "_m"], name=name + "_m"),
              helper.make_node("ReduceSum", [name + "_m"], [name + "_s"], name=name + "_sum",
                               keepdims=0),
              helper.make_node("Mul", [name + "_s", "zero"], [name + "_z"], name=name + "_mul")]
    return nodes


def smuggle_model_bytes(bundle, data, params):
    bundle.meta["parameters"] = bf.human(params)
    bundle.smuggle("model/student_model.onnx", data)


# -- teacher fingerprints and tensor encodings ----------------------------------

def teacher_file(tmp_path, arr, name="layer3.weight"):
    g = helper.make_graph([helper.make_node("Identity", [name], ["o"])], "t", [],
                          [helper.make_tensor_value_info("o", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(arr, name)])
    p = tmp_path / "big.onnx"
    p.write_bytes(helper.make_model(g).SerializeToString())
    return p


def fp16_in_int32_data(arr):
    # the ONNX way for float16 without raw_data: one varint per element
    bits = arr.view(np.uint16).ravel()
    return [field(5, 2, b"".join(varint(int(v)) for v in bits))]


def int8_in_int32_data(arr):
    # int8 as int32 varints: negative values take ten bytes each
    return [field(5, 2, b"".join(varint(int(v)) for v in arr.ravel()))]


def float_unpacked(arr):
    # float_data written one fixed32 field per element (valid protobuf)
    return [field(4, 5, int(v)) for v in arr.view(np.uint32).ravel()]


def float_split(arr):
    # float_data in two packed runs: protobuf concatenates them
    raw = arr.tobytes()
    return [field(4, 2, raw[:len(raw) // 2]), field(4, 2, raw[len(raw) // 2:])]


def raw_after_empty_typed(arr):
    # an empty int32_data before raw_data: the raw bytes are what is read
    return [field(5, 2, b""), field(9, 2, arr.tobytes())]


def raw_after_decoy_raw(arr):
    # raw_data twice: protobuf (and ONNX Runtime) keep the last one
    return [field(9, 2, b"\0" * 16), field(9, 2, arr.tobytes())]


ENCODINGS = {
    "fp16-int32_data": (TensorProto.FLOAT16, lambda: floats(4096, 11).astype(np.float16).reshape(512, 8),
                        fp16_in_int32_data),
    "int8-int32_data": (TensorProto.INT8,
                        lambda: np.random.default_rng(5).integers(-128, 128, 8192, dtype=np.int8),
                        int8_in_int32_data),
    "float-unpacked": (TensorProto.FLOAT, lambda: floats(2048, 12), float_unpacked),
    "float-split": (TensorProto.FLOAT, lambda: floats(2048, 13), float_split),
    "raw-after-empty-typed": (TensorProto.FLOAT, lambda: floats(2048, 14), raw_after_empty_typed),
    "raw-after-decoy-raw": (TensorProto.FLOAT, lambda: floats(2048, 15), raw_after_decoy_raw),
}


@pytest.mark.parametrize("enc", ENCODINGS)
def test_teacher_tensor_copied_in_another_encoding(nexus, bundle, tmp_path, enc):
    """The fingerprint compares a tensor's contents, not how the protobuf
    happens to encode them: a teacher's float16 table written as int32_data
    varints (what onnx.helper.make_tensor does without raw=True), floats
    written unpacked or in two runs, or raw_data after a decoy field is
    still the teacher's tensor."""
    dtype, make, encode = ENCODINGS[enc]
    arr = make()
    teacher = teacher_file(tmp_path, arr)
    zero = numpy_helper.from_array(np.zeros((), np.float32), "zero")
    m = bf.student_model(extra_nodes=sink_nodes("E2"), extra_initializers=[zero])
    data = model_with_initializer(m, tensor_bytes("E2", dtype, arr.shape, encode(arr)))
    smuggle_model_bytes(bundle, data, bf.parameters(m) + arr.size)
    rc, rep = verify(nexus, bundle)
    # a used, declared tensor: only the canonical form (the initializer is
    # appended out of field order, and most encodings are not nexus's own)
    # fails it without the teacher
    assert codes(rep, "FAIL") == {"onnx-not-canonical"}, rep["findings"]
    rep = expect_fail(nexus, bundle, "teacher-tensor-copied", "--teacher", teacher)
    assert any("'E2'" in f["message"] for f in rep["findings"]
               if f["code"] == "teacher-tensor-copied"), rep["findings"]


def test_teacher_in_typed_fields_matches_raw_student(nexus, bundle, tmp_path):
    """The other way round: a teacher written with typed fields still
    fingerprints by its contents."""
    arr = floats(4096, 21).astype(np.float16).reshape(512, 8)
    teacher = tmp_path / "big.onnx"
    g = helper.make_graph([helper.make_node("Identity", ["w"], ["o"])], "t", [],
                          [helper.make_tensor_value_info("o", TensorProto.FLOAT16, None)], [])
    t = helper.make_model(g)
    teacher.write_bytes(model_with_initializer(
        t, tensor_bytes("w", TensorProto.FLOAT16, arr.shape, fp16_in_int32_data(arr))))
    zero = numpy_helper.from_array(np.zeros((), np.float32), "zero")
    m = bf.student_model(extra_nodes=sink_nodes("E2"),
                         extra_initializers=[zero, numpy_helper.from_array(arr, "E2")])
    bundle.meta["parameters"] = bf.human(bf.parameters(m))
    bundle.smuggle("model/student_model.onnx", m.SerializeToString())
    expect_fail(nexus, bundle, "teacher-tensor-copied", "--teacher", teacher)


# -- f-strings: their replacement fields are code ---------------------------------

@pytest.mark.parametrize("src", [
    "def load(n):\n    return f\"{__import__('tr' + n)}\"\n",
    "def load(code):\n    return f'{eval(code)}'\n",
    "import builtins\ndef load(n):\n    return f\"{getattr(builtins, n)}\"\n",
    "def load(b):\n    return f\"{__import__('pick' + 'le').loads(b)}\"\n",
    # in a nested field of the format spec, after a conversion
    "def show(x, s):\n    return f'{x!r:>{eval(s)}}'\n",
    # an f-string inside an f-string's field
    "def load(n):\n    return f\"{f'{__import__(n)}'}\"\n",
    # a triple-quoted f-string whose field spans lines
    "def load(n):\n    return f'''{\n        exec(n)\n    }'''\n",
], ids=["import-computed", "eval", "getattr-builtins", "pickle", "format-spec", "nested",
        "multiline"])
def test_code_in_fstring_field(nexus, bundle, src):
    """Python runs the expressions of an f-string's replacement fields: the
    dynamic-import rules apply inside them as anywhere else."""
    bundle.smuggle("src/helpers.py", src)
    expect_fail(nexus, bundle, "dynamic-import")


def test_term_in_fstring_field_is_code(nexus, bundle):
    bundle.smuggle("src/helpers.py", "import x\ndef f():\n    return f'{x.teacher_logits}'\n")
    expect_fail(nexus, bundle, "term-in-code")


def test_fstring_after_a_docstring_is_not_a_docstring(nexus, bundle):
    """`"doc" f"{...}"` is a JoinedStr that Python evaluates at import, not a
    docstring: a term in it is code, not a comment."""
    bundle.smuggle("src/helpers.py", '"""Spam helpers.""" f"{open(\'teacher.bin\')}"\n')
    expect_fail(nexus, bundle, "term-in-string")
    bundle.smuggle("src/helpers.py", 'class A:\n    "x" f"{\'teacher\'}"\n')
    expect_fail(nexus, bundle, "term-in-string")


def test_fstrings_of_serving_code_are_fine(nexus, bundle):
    bundle.smuggle("src/helpers.py", (
        '"""Formatting helpers."""\n'
        "def fmt(label, score, width, d):\n"
        "    a = f'{label!r:>{width}} {score:.3f} {d[\"k\"]} {{literal}}'\n"
        "    b = f\"{score=} {label!s} {(lambda v: v)(1)} {'x' if score else 'y'}\"\n"
        "    c = f'''{label\n"
        "        }'''\n"
        "    return a + b + c + f'{score:{width}.{2}f}' + rf'\\d{width}'\n"))
    rc, rep = verify(nexus, bundle)
    assert codes(rep, "FAIL") == set() and codes(rep, "WARN") == {"unsigned"}, rep["findings"]


# -- the tokenizer: vocabularies are data, but only vocabularies ----------------

def tokenizer(bundle):
    return json.loads(bundle.path("model/tokenizer/tokenizer.json").read_text())


def smuggle_tokenizer(bundle, tok):
    bundle.smuggle("model/tokenizer/tokenizer.json", json.dumps(tok))


@pytest.mark.parametrize("where", ["top-level", "merges", "normalizer", "added-token"])
def test_numbers_in_tokenizer_json_outside_the_vocab(nexus, bundle, where):
    """Only vocabulary entries are exempt from the literal-data rule: 64 KiB
    of floats under any other key of tokenizer.json (which the runtime
    ignores) is a tensor."""
    tok = tokenizer(bundle)
    data = [float(x) for x in floats(16384)]
    if where == "top-level":
        tok["cache"] = data
    elif where == "merges":
        tok["model"]["merges"] = data
    elif where == "normalizer":
        tok["normalizer"]["weights"] = data
    else:
        tok["added_tokens"] = [{"id": i, "content": f"[X{i}]", "scale": x}
                               for i, x in enumerate(data[:4096])]
    smuggle_tokenizer(bundle, tok)
    expect_fail(nexus, bundle, "literal-blob")


def test_vocab_ids_carrying_a_tensor(nexus, bundle):
    """WordPiece ids are 0..n-1: ids that are 32-bit words of a tensor are
    not ids."""
    tok = tokenizer(bundle)
    words = np.frombuffer(floats(4096).tobytes(), dtype=np.uint32)
    for i, w in enumerate(words):
        tok["model"]["vocab"][f"w{i}x"] = int(w)
    smuggle_tokenizer(bundle, tok)
    expect_fail(nexus, bundle, "vocab-entry-suspicious")


def test_vocab_ids_repeated(nexus, bundle):
    tok = tokenizer(bundle)
    for i in range(64):
        tok["model"]["vocab"][f"extra{i}"] = i % 3
    smuggle_tokenizer(bundle, tok)
    expect_fail(nexus, bundle, "vocab-entry-suspicious")


@pytest.mark.parametrize("fmt", ["decimal-words", "short-words-repeated"])
def test_vocab_txt_of_numbers(nexus, bundle, fmt):
    """A vocab.txt of 10-digit numbers (the runtime never reads it when
    tokenizer.json is there) is 64 KiB of float32 in decimal; four-digit
    numbers carry as much once entries may repeat."""
    words = np.frombuffer(floats(16384).tobytes(), dtype=np.uint32)
    if fmt == "decimal-words":
        lines = [str(int(w)) for w in words]
    else:
        lines = [f"{int(w) % 10000:04d}" for w in words]
    bundle.smuggle("model/tokenizer/vocab.txt", "\n".join(bf.VOCAB + lines) + "\n")
    expect_fail(nexus, bundle, "vocab-entry-suspicious")


def test_real_tokenizer_numbers_are_fine(nexus, bundle):
    """Numeric tokens, added tokens and a post-processor are what real
    tokenizers hold."""
    tok = tokenizer(bundle)
    vocab = tok["model"]["vocab"]
    for n in list(range(0, 2100)) + [10000, 100000, 1000000]:
        for w in (str(n), "##" + str(n)):
            vocab.setdefault(w, len(vocab))
    tok["added_tokens"] = [{"id": i, "content": t, "single_word": False, "lstrip": False,
                            "rstrip": False, "normalized": False, "special": True}
                           for i, t in enumerate(bf.VOCAB[:4])]
    tok["post_processor"] = {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]}
    tok["model"]["max_input_chars_per_word"] = 100
    smuggle_tokenizer(bundle, tok)
    inv = sorted(vocab, key=vocab.get)
    bundle.smuggle("model/tokenizer/vocab.txt", "\n".join(inv) + "\n")
    rc, rep = verify(nexus, bundle)
    assert codes(rep, "FAIL") == set() and codes(rep, "WARN") == {"unsigned"}, rep["findings"]


# -- tensors and strings the graph never uses -------------------------------------

def test_initializer_defined_twice(nexus, bundle):
    """Two initializers named `embedding`: a node "uses" both by name, ONNX
    Runtime keeps one, and the other is a tensor no node reads."""
    m = bf.student_model()
    hidden = numpy_helper.from_array(floats(len(bf.VOCAB) * bf.HIDDEN, 3)
                                     .reshape(len(bf.VOCAB), bf.HIDDEN), "embedding")
    m.graph.initializer.insert(0, hidden)
    bundle.meta["parameters"] = bf.human(bf.parameters(m))
    bundle.smuggle("model/student_model.onnx", m.SerializeToString())
    rep = expect_fail(nexus, bundle, "onnx-unreferenced-initializer")
    assert any("embedding" in f["message"] for f in rep["findings"])


def test_initializer_shadowed_by_a_node_output(nexus, bundle):
    m = bf.student_model()
    m.graph.initializer.append(numpy_helper.from_array(floats(4096, 4), "pooled"))
    bundle.meta["parameters"] = bf.human(bf.parameters(m))
    bundle.smuggle("model/student_model.onnx", m.SerializeToString())
    expect_fail(nexus, bundle, "onnx-unreferenced-initializer")


def b64_chunks(n_floats, size):
    import base64
    blob = base64.b64encode(floats(n_floats).tobytes()).decode()
    return [blob[i:i + size] for i in range(0, len(blob), size)]


def identity_chain(start, texts, make):
    """Live Identity nodes start -> start_1 -> ... each carrying a text."""
    nodes, prev = [], start
    for i, t in enumerate(texts):
        out = f"{start}_{i + 1}"
        nodes.append(helper.make_node("Identity", [prev], [out], name=f"id{i}", **make(t)))
        prev = out
    return nodes, prev


@pytest.mark.parametrize("make", [lambda t: {"doc_string": t},
                                  lambda t: {"doc_string": "", "note": t}],
                         ids=["doc_strings", "string_attributes"])
def test_free_text_carrying_a_tensor(nexus, bundle, make):
    """Each node may bring 1 KiB of names and attributes; doc strings (and
    metadata, string attributes) are free text that must not grow with the
    node count: 160 KiB of base64 floats cut into 900-byte doc strings or
    string attributes of live nodes is a tensor."""
    nodes, last = identity_chain("b", b64_chunks(30000, 900), make=make)
    g = bf.student_graph()
    g.node[3].input[1] = last
    g.node.extend(nodes)
    bundle.smuggle("model/student_model.onnx", bf.student_model(graph=g).SerializeToString())
    expect_fail(nexus, bundle, "onnx-string-blob")


def test_external_tensors_aliasing_one_range(nexus, bundle):
    """Two tensors reading the same bytes of an external file explain them
    once: counted twice, they let the model hide as much again in names."""
    big = floats(64 << 10, 8)                      # 256 KiB in the data file
    m = bf.student_model()
    g = m.graph
    names = b64_chunks(45000, 4000)                # 240 KiB of base64 in node names
    prev = "b"
    for i, n in enumerate(names):
        g.node.append(helper.make_node("Identity", [prev], [f"b{i}"], name=n))
        prev = f"b{i}"
    g.node[3].input[1] = prev
    for t in ("big", "alias"):
        init = g.initializer.add()
        init.name, init.data_type = t, TensorProto.FLOAT
        init.dims.extend([big.size])
        init.data_location = TensorProto.EXTERNAL
        for k, v in (("location", "student_model.onnx.data"), ("offset", "0"),
                     ("length", str(big.nbytes))):
            e = init.external_data.add()
            e.key, e.value = k, v
        g.node.extend(sink_nodes(t, to_float=False) + [
            helper.make_node("Add", ["logits0" if t == "big" else "logits1", t + "_z"],
                             ["logits1" if t == "big" else "logits"], name=t + "_add")])
    g.initializer.append(numpy_helper.from_array(np.zeros((), np.float32), "zero"))
    g.node[3].output[0] = "logits0"
    bundle.write("model/student_model.onnx.data", big.tobytes())
    bundle.meta["parameters"] = bf.human(bf.parameters(m))
    bundle.smuggle("model/student_model.onnx", m.SerializeToString())
    rep = expect_fail(nexus, bundle, "model-size-unexplained")
    # the base64 in the names is also over the leak budget on its own
    assert codes(rep, "FAIL") == {"model-size-unexplained", "budget-exceeded"}, rep["findings"]


# -- runtime.yaml python_packages -------------------------------------------------

@pytest.mark.parametrize("pkg", ["training_modules", "training_modules.distill"])
def test_spec_training_package_declared(nexus, bundle, pkg):
    """`training_modules` is the spec's own name for training code (SPEC
    §2A.3, always a forbidden import): declared as a serving package it
    would let `import training_modules` through the sandboxed import check."""
    bundle.smuggle("config/runtime.yaml", bf.RUNTIME_YAML.replace(
        "python_packages: [onnxruntime, numpy]", f"python_packages: [onnxruntime, numpy, {pkg}]"))
    bundle.smuggle("src/helpers.py", "from training_modules.distill import kl_loss\n")
    expect_fail(nexus, bundle, "training-package-declared")


# -- TRV-5: imports satisfied by the bundle posing as a training package ---------

FAKE_PACKAGE = {
    # src/torch.py makes itself a package over src/, so torch.optim is
    # src/optim.py in the sandbox and the real torch.optim in production
    "path-assigned": "import os\n__path__ = [os.path.dirname(__file__)]\n",
    "path-by-computed-name": ("import os\n"
                              "globals()[chr(95) * 2 + 'pa' + 'th' + chr(95) * 2] = "
                              "[os.path.dirname(__file__)]\n"),
}


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


# -- TOCTOU: a file changed between the hash and the scans ------------------------

def test_file_swapped_after_it_was_hashed(nexus, bundle):
    """integrity hashes README.md (a base64 blob, as the manifest says);
    the attacker then writes clean text of the same size in place, so the
    allowlist and code checks read that, and can put the blob back after
    verify.  A file whose inode, size or times changed while verify ran is
    not the file that was judged."""
    import base64
    import ctypes
    import os
    import threading
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    # a 64 MiB initializer hashed after README.md holds verify in integrity
    big = numpy_helper.from_array(np.zeros(16 << 20, np.float32), "big")
    g = bf.student_graph(extra_initializers=[big], extra_nodes=[
        helper.make_node("ReduceSum", ["big"], ["bs"], name="bs", keepdims=0),
        helper.make_node("Add", ["logits0", "bs"], ["logits"], name="ba")])
    g.node[3].output[0] = "logits0"
    m = bf.student_model(graph=g)
    bundle.meta["parameters"] = bf.human(bf.parameters(m))
    bundle.write("model/student_model.onnx", m.SerializeToString())
    blob = base64.b64encode(floats(8192).tobytes()).decode()
    evil = "# Spam\n\n" + blob + "\n"
    clean = "# Spam\n\n" + ("lorem ipsum " * len(blob))[:len(blob)] + "\n"
    bundle.smuggle("README.md", evil)
    readme = bundle.path("README.md")
    fd = libc.inotify_init1(0)
    assert fd >= 0 and libc.inotify_add_watch(fd, str(readme).encode(), 0x10) >= 0  # IN_CLOSE_NOWRITE

    def swap():
        os.read(fd, 4096)          # integrity closed README.md after hashing it
        os.chmod(readme, 0o644)
        with open(readme, "r+") as f:
            f.write(clean)
        os.chmod(readme, 0o444)

    t = threading.Thread(target=swap, daemon=True)
    t.start()
    try:
        rc, rep = verify(nexus, bundle)
    finally:
        t.join(5)
        os.close(fd)
    assert rc == 1 and "changed-during-verify" in codes(rep, "FAIL"), rep["findings"]
    assert next(c["status"] for c in rep["checks"] if c["id"] == "integrity") == "FAIL"


# -- Python source encodings ------------------------------------------------------

@pytest.mark.parametrize("src", [
    # UTF-7: Python reads +AHQ- as "t" and +AF8- as "_"
    '# coding: utf-7\nx = "+AHQ-eacher"\n',
    "# -*- coding: utf-7 -*-\nimport +AHQ-eacher+AF8-model\n",
    # the whole file is unicode-escape decoded before it is tokenized
    "#!/usr/bin/env python3\n# vim: set fileencoding=unicode_escape :\nx = 1\n",
    "# coding=raw_unicode_escape\nx = 1\n",
])
def test_source_encoding_the_scanner_does_not_read(nexus, bundle, src):
    """A coding cookie makes Python decode the file before it tokenizes it:
    under utf-7, `"+AHQ-eacher"` is "teacher" and `import +AHQ-eacher+AF8-model`
    imports teacher_model.  The scanner reads UTF-8, so a file declared in an
    encoding that differs from UTF-8 on ASCII cannot be shown clean."""
    bundle.smuggle("src/helpers.py", src)
    expect_fail(nexus, bundle, "code-unparsable")


@pytest.mark.parametrize("cookie", ["# -*- coding: utf-8 -*-", "# coding=UTF8",
                                    "# vim: set fileencoding=latin-1 :", "# coding: ascii"])
def test_source_encoding_utf8_compatible_is_fine(nexus, bundle, cookie):
    bundle.smuggle("src/helpers.py", f"{cookie}\nx = 1\n")
    rc, rep = verify(nexus, bundle)
    assert codes(rep, "FAIL") == set(), rep["findings"]


@pytest.mark.parametrize("src", [
    'x = "teach\\\ner"\n',
    'x = "teach\\\r\ner"\n',
    "x = b'teach\\\ner'\n",
    'x = """teach\\\ner"""\n',
    'y = 1\nx = f"teach\\\ner{y}"\n',
], ids=["lf", "crlf", "bytes", "triple", "fstring"])
def test_backslash_newline_inside_a_string(nexus, bundle, src):
    """Backslash-newline inside a literal continues it: Python reads
    "teach\\<newline>er" as "teacher"."""
    bundle.smuggle("src/helpers.py", src)
    expect_fail(nexus, bundle, "term-in-string")


def test_attribute_tensor_given_twice(nexus, bundle, tmp_path):
    """protobuf merges a singular message field given twice: a Constant whose
    `value` comes in two halves is, for ONNX Runtime, one tensor holding
    both (repeated values concatenate), so each half alone fingerprinted
    as nothing.  The reader refuses a second t/g/sparse_tensor."""
    arr = floats(4096, 31)
    teacher = teacher_file(tmp_path, arr)
    raw = arr.tobytes()
    half = len(raw) // 2
    t1 = field(1, 0, arr.size) + field(2, 0, TensorProto.FLOAT) + field(4, 2, raw[:half])
    t2 = field(4, 2, raw[half:])
    attr = field(1, 2, b"value") + field(20, 0, 4) + field(5, 2, t1) + field(5, 2, t2)
    const = field(1 + 1, 2, b"k") + field(3, 2, b"k") + field(4, 2, b"Constant") + field(5, 2, attr)
    zero = numpy_helper.from_array(np.zeros((), np.float32), "zero")
    m = bf.student_model(extra_initializers=[zero], extra_nodes=sink_nodes("k", to_float=False))
    graph = m.graph.SerializeToString() + field(1, 2, const)
    rest = type(m)()
    rest.CopyFrom(m)
    rest.ClearField("graph")
    smuggle_model_bytes(bundle, rest.SerializeToString() + field(7, 2, graph), bf.parameters(m))
    rep = expect_fail(nexus, bundle, "onnx-invalid", "--teacher", teacher)


# -- teacher tensors cut up or padded -------------------------------------------------

def split_student(parts):
    """A student whose extra initializers p0, p1, ... are each discarded
    (x 0): what a copied teacher tensor cut into pieces looks like.
    (Concatenated in the graph, the pieces would be constant-subgraph.)"""
    zero = numpy_helper.from_array(np.zeros((), np.float32), "zero")
    inits = [numpy_helper.from_array(p, f"p{i}") for i, p in enumerate(parts)]
    nodes = [n for i in range(len(parts)) for n in sink_nodes(f"p{i}", to_float=False)]
    return bf.student_model(extra_nodes=nodes, extra_initializers=inits + [zero])


@pytest.mark.parametrize("cut", ["halves", "odd-split", "padded"])
def test_teacher_tensor_cut_into_pieces(nexus, bundle, tmp_path, cut):
    """A teacher layer split in two initializers (at a row or at any
    element) and concatenated at run time, or stored inside a larger tensor,
    is no tensor byte-identical to the teacher's, yet it is the teacher's
    data: the fingerprint also compares content-defined chunks."""
    w = floats(256 * 64, 41).reshape(256, 64)        # a 64 KiB teacher layer
    teacher = teacher_file(tmp_path, w)
    flat = w.ravel()
    if cut == "halves":
        parts = [flat[:flat.size // 2], flat[flat.size // 2:]]
    elif cut == "odd-split":
        parts = [flat[:5003], flat[5003:]]
    else:
        parts = [np.concatenate([floats(777, 42), flat, floats(1001, 43)])]
    m = split_student(parts)
    bundle.meta["parameters"] = bf.human(bf.parameters(m))
    bundle.smuggle("model/student_model.onnx", m.SerializeToString())
    rc, rep = verify(nexus, bundle)
    assert codes(rep, "FAIL") == set(), rep["findings"]
    rep = expect_fail(nexus, bundle, "teacher-tensor-copied", "--teacher", teacher)


def test_independent_tensors_share_no_chunks(nexus, bundle, tmp_path):
    """Zeros and constant runs (padding rows, unit norms) are in every model:
    they are not a copy."""
    w = floats(256 * 64, 44).reshape(256, 64)
    w[:16] = 0.0
    w[100:120] = 1.0
    teacher = teacher_file(tmp_path, w)
    s = floats(256 * 64, 45).reshape(256, 64)
    s[:16] = 0.0
    s[200:220] = 1.0
    m = split_student([s.ravel()])
    bundle.meta["parameters"] = bf.human(bf.parameters(m))
    bundle.smuggle("model/student_model.onnx", m.SerializeToString())
    rc, rep = verify(nexus, bundle, "--teacher", teacher)
    assert codes(rep, "FAIL") == set(), rep["findings"]


def test_term_after_the_strings_a_tensor_visits(nexus, bundle):
    """Only the first 100000 elements of a string tensor were visited: a
    term in the next one went unread, and 200 KB of empty strings fit the
    size check's allowance of a model of a few hundred nodes."""
    vals = [b""] * 100000 + [b"teacher_model_path"]
    t = helper.make_tensor("labels", TensorProto.STRING, [len(vals)], vals)
    nodes, last = identity_chain("b", [""] * 300, make=lambda t: {})
    g = bf.student_graph(extra_nodes=[helper.make_node("Identity", ["labels"], ["labels_out"],
                                                       name="lab")])
    g.output.append(helper.make_tensor_value_info("labels_out", TensorProto.STRING, None))
    g.initializer.append(t)
    g.node[3].input[1] = last
    g.node.extend(nodes)
    m = bf.student_model(graph=g)
    bundle.meta["parameters"] = bf.human(bf.parameters(m))
    bundle.smuggle("model/student_model.onnx", m.SerializeToString())
    expect_fail(nexus, bundle, "onnx-invalid")


def test_many_external_locations_do_not_stall_verify(nexus, bundle):
    """200,000 external initializers, each naming another data file: the
    size check groups tensors by file once (it compared every pair, ~4e10
    string compares, minutes of CPU) and fails the model in seconds."""
    from onnx import TensorProto
    m = bf.student_model()
    for i in range(200_000):
        t = m.graph.initializer.add(name=f"x{i}", data_type=TensorProto.FLOAT, dims=[1],
                                    data_location=TensorProto.EXTERNAL)
        e = t.external_data.add()
        e.key, e.value = "location", f"d{i}.bin"
    bundle.smuggle("model/student_model.onnx", m.SerializeToString())
    expect_fail(nexus, bundle, "onnx-external-outside", timeout=30)


def test_many_fstring_fields_do_not_stall_verify(nexus, bundle):
    """An f-string of 300,000 replacement fields over 15 lines: each field
    is scanned as code at its line, counted on from the field before (it
    was counted from the string's start, ~1e11 bytes walked)."""
    body = "\n".join("{a}" * 20000 for _ in range(15))
    bundle.smuggle("src/utils.py", ('a = 1\nS = f"""' + body + '"""\n').encode())
    rc, rep = verify(nexus, bundle, timeout=30)
    assert rc == 0, rep
