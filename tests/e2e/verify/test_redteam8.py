"""Red team 8 (issue #22): an insider who controls only the workspace runs
the official `nexus build --key`; each case must end with no bundle, or a
bundle the deployment gate

    nexus verify --strict --require-signature --pubkey RELEASE.pub
                 --teacher artifacts/teacher.onnx --teacher checkpoints/teacher.pt

refuses.  Cases the gate catches guard against regressions; cases that
still get through are strict xfails naming their class and the fix wanted.
"""
import json
import os
import resource
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import workspace as ws
from conftest import run
from test_quantize import EMBED_RT
from .test_redteam7 import K_T, D, _teacher, embedder, gate, signed_build_is_refused, teacher_onnx


def signed_and_passed(nexus, root, out, release_key):
    """The official build signs the workspace and the gate passes it."""
    key, pub = release_key
    b = run(nexus, "build", root, "-o", out, "--key", key, timeout=600)
    assert b.returncode == 0 and out.exists(), b.stderr
    g = gate(nexus, out, pub, root)
    return g.returncode == 0


def student(nodes, value_info=(), dim=64, seed=4):
    """input_ids -> Gather -> nodes (h0 .. h) -> ReduceMean -> MatMul -> logits."""
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((len(ws.VOCAB), dim)).astype(np.float32)
    w = (rng.standard_normal((dim, 2)) / 8).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Gather", ["embeddings.weight", "input_ids"], ["h0"])] + nodes +
        [helper.make_node("ReduceMean", ["h"], ["pooled"], axes=[1], keepdims=0),
         helper.make_node("MatMul", ["pooled", "classifier.weight"], ["logits"])],
        "student",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        [numpy_helper.from_array(emb, "embeddings.weight"),
         numpy_helper.from_array(w, "classifier.weight")], value_info=list(value_info))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m.SerializeToString()


# ------------------------------------------- shapes as a channel (fixed)
# value_info may describe every node output, each shape up to 16
# dimensions of up to 2^24: 48 bytes of free numbers per edge, which the
# canonical check bounds but the leak budget did not charge.  A chain of
# Identity nodes (live, no constants) then carried a 64 KiB teacher layer
# in its value_info, for about 5 KiB of budget (the names).
def dims_payload(data):
    """data as dimensions of 24 bits each (+1: a dimension is at least 1),
    16 to a shape."""
    data = data + bytes(-len(data) % 48)
    words = np.frombuffer(data, np.uint8).reshape(-1, 3).astype(np.int64)
    dims = (words[:, 0] | words[:, 1] << 8 | words[:, 2] << 16) + 1
    return [dims[i:i + 16].tolist() for i in range(0, len(dims), 16)]


def dims_decode(shapes):
    d = np.array([x for s in shapes for x in s], np.int64) - 1
    return np.stack([d & 255, d >> 8 & 255, d >> 16], 1).astype(np.uint8).tobytes()


def identity_chain(shapes):
    """Identity nodes h0 -> h1 -> ... with these declared shapes, then
    Reshape to h0's real shape (ONNX Runtime keeps what value_info says)."""
    n = len(shapes)
    nodes = [helper.make_node("Identity", [f"h{i}"], [f"h{i + 1}"]) for i in range(n)]
    nodes += [helper.make_node("Shape", ["h0"], ["shape"]),
              helper.make_node("Reshape", [f"h{n}", "shape"], ["h"])]
    vi = [helper.make_tensor_value_info(f"h{i + 1}", TensorProto.FLOAT, s)
          for i, s in enumerate(shapes)]
    return student(nodes, vi)


def test_teacher_layer_in_value_info_shapes(nexus, release_key, tmp_path):
    t = _teacher()
    shapes = dims_payload(t.tobytes())
    assert dims_decode(shapes)[:t.nbytes] == t.tobytes()
    root = ws.make_workspace(tmp_path / "ws", student=identity_chain(shapes),
                             runtime_yaml=EMBED_RT)
    teacher_onnx(root, {"encoder.layer.3.output.dense": t})
    why = signed_build_is_refused(nexus, root, tmp_path / "bundle", release_key)
    assert "budget-exceeded" in why, why


def test_real_shapes_in_value_info_cost_little(nexus, release_key, tmp_path):
    """What an exporter writes (every edge's shape, symbolic and small
    dimensions) is charged next to nothing: no false alarm."""
    shapes = [["batch", "seq", 64]] * 100
    root = ws.make_workspace(tmp_path / "ws", student=identity_chain(shapes),
                             runtime_yaml=EMBED_RT)
    assert signed_and_passed(nexus, root, tmp_path / "bundle", release_key)


# ------------------- a teacher tensor negated or scaled past 2^3 (fixed)
# The value fingerprint keyed a value by its sign and mantissa and counted
# hits at scales 2^-3 .. 2^3 only; -t and 2^k t for |k| > 3 are exact,
# lossless copies (undone offline by one multiplication), and live.  It now
# keys on the mantissa alone and counts every exponent difference.  More
# scales, signs and forms: tests/e2e/verify/test_teacher_scaled.py.
SCALED = {"negated": -1.0, "times 16": 16.0}


@pytest.mark.parametrize("case", sorted(SCALED))
def test_teacher_tensor_negated_or_scaled(nexus, release_key, tmp_path, case):
    rng = np.random.default_rng(5)
    t = _teacher()
    w2 = (t * np.float32(SCALED[case])).astype(np.float32)
    assert np.array_equal(w2 / np.float32(SCALED[case]), t)   # exact
    w1 = (rng.standard_normal((D, K_T)) / 8).astype(np.float32)
    emb = rng.standard_normal((len(ws.VOCAB), D)).astype(np.float32)
    root = ws.make_workspace(tmp_path / "ws", student=embedder(emb, w1, w2),
                             runtime_yaml=EMBED_RT)
    teacher_onnx(root, {"encoder.layer.3.output.dense": t})
    why = signed_build_is_refused(nexus, root, tmp_path / "bundle", release_key)
    assert "encoder.layer.3.output.dense" in why, why


def test_teacher_tensor_scaled_by_two_is_found(nexus, release_key, tmp_path):
    """Inside the fingerprint's range: a guard for the case above."""
    rng = np.random.default_rng(5)
    t = _teacher()
    w1 = (rng.standard_normal((D, K_T)) / 8).astype(np.float32)
    emb = rng.standard_normal((len(ws.VOCAB), D)).astype(np.float32)
    root = ws.make_workspace(tmp_path / "ws", student=embedder(emb, w1, t * 2),
                             runtime_yaml=EMBED_RT)
    teacher_onnx(root, {"encoder.layer.3.output.dense": t})
    why = signed_build_is_refused(nexus, root, tmp_path / "bundle", release_key)
    assert "encoder.layer.3.output.dense" in why, why


# -------------------- code given as data through a declared package
# numpy.test() (and every numpy subpackage's .test) is a PytestTester: it
# runs pytest on the paths it is given, and pytest's doctest collector runs
# the `>>>` lines of any text file (README.md) as code the audit never
# reads.  onnxruntime.tools.symbolic_shape_infer holds sympy as an
# attribute, whose sympify() evaluates a string.  Each door sits in a
# function the import check never calls.  Refused (pyaudit_lists.c:
# pytest, sympy, runners; pymodattr.h: nx_py_runner); more spellings in
# tests/unit/test_pyaudit.c and tests/e2e/test_pyaudit.py.
README_STEP = ("# Spam classifier\n\nUsage:\n\n"
               ">>> import pathlib\n"
               ">>> _ = pathlib.Path(OUT).write_text('ran')\n")
DECLARED_DOORS = {
    "numpy.test runs README doctests":
        "import numpy as np\n\n\ndef check(readme):\n"
        "    return np.test(tests=[readme], extra_argv=['--doctest-glob=*.md'])\n",
    "numpy.linalg.test": "from numpy import linalg\n\n\ndef check(readme):\n"
                         "    return linalg.test(tests=[readme], extra_argv=['--doctest-glob=*.md'])\n",
    "sympy through onnxruntime.tools":
        "def shape(expr):\n"
        "    from onnxruntime.tools import symbolic_shape_infer as ssi\n"
        "    return ssi.sympy.sympify(expr)\n",
}


@pytest.mark.parametrize("door", sorted(DECLARED_DOORS))
def test_code_as_data_through_a_declared_package(nexus, release_key, tmp_path, door):
    root = ws.make_workspace(tmp_path / "ws", utils_py=ws.UTILS_PY + "\n\n" + DECLARED_DOORS[door])
    why = signed_build_is_refused(nexus, root, tmp_path / "bundle", release_key)
    assert any(c in why for c in ("python-reflective", "import-denied")), why


def test_numpy_test_does_run_readme_code(tmp_path):
    """The door is real: numpy.test runs a README's doctest lines."""
    pytest.importorskip("pytest")
    out = tmp_path / "ran"
    readme = tmp_path / "README.md"
    readme.write_text(README_STEP.replace("OUT", repr(str(out))))
    r = subprocess.run(["/usr/bin/python3", "-c",
                        "import numpy as np, sys\n"
                        f"np.test(tests=[{str(readme)!r}], extra_argv=['--doctest-glob=*.md', "
                        "'-p', 'no:cacheprovider'])\n"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    if not out.exists() and "ImportError" in r.stdout + r.stderr:
        # numpy's test runner imports numpy.distutils, which needs Debian's
        # python3-distutils: a minimal machine lacks it and the door is shut
        # there (the audit refuses it either way)
        pytest.skip("numpy.test cannot run here: " + (r.stdout + r.stderr).strip()[-200:])
    assert out.read_text() == "ran", r.stdout[-2000:] + r.stderr[-2000:]


# ------------------------------------------------------- cost (fixed)
# Every Python token of a src/ file is held at once (about 100 bytes each,
# in the code scan and again in the audit), and a file may be 64 MiB: a
# 6 MB statement of 3 M one-byte tokens took 540 MB and 30-90 s, and it
# compresses to nothing, so the leak budget does not stop it either.  The
# lexer now ends a file at NX_PYLEX_TOKENS_MAX tokens with an error.
def test_python_tokens_within_the_memory_budget(nexus, bundle):
    """docs/TRV.md: 256 MiB peak RSS of nexus verify for any bundle.  Under
    that limit, verify must still answer (a FAIL), not run out of memory."""
    from verify_helpers import verify
    bundle.smuggle("src/helpers.py", "X = (" + "a," * 1_600_000 + ")\n")
    limit = 256 << 20

    def cap():
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))

    env = dict(os.environ, NEXUS_RUNTIME_DIR=str(bundle.runtime_dir))
    r = subprocess.run([nexus, "verify", "--json", "--no-sandbox", bundle.root],
                       capture_output=True, text=True, env=env, preexec_fn=cap, timeout=300)
    assert r.returncode == 1 and json.loads(r.stdout)["verdict"] == "FAIL", \
        (r.returncode, r.stderr[-500:])


# ------------------------------------- ONNX places that hold free data
# Guards: each is caught today.
def _blob_graph(name):
    blob = np.random.default_rng(9).standard_normal(16384).astype(np.float32)   # 64 KiB
    return helper.make_graph([helper.make_node("Identity", ["t"], ["o"])], name, [],
                             [helper.make_tensor_value_info("o", TensorProto.FLOAT, [16384])],
                             [numpy_helper.from_array(blob, "t")])


def _training_algorithm(m):
    """TrainingInfoProto: ONNX's own form of a training step, never run by
    ONNX Runtime's inference session."""
    m.training_info.add().algorithm.CopyFrom(_blob_graph("algorithm"))


def _training_initialization(m):
    m.training_info.add().initialization.CopyFrom(_blob_graph("initialization"))


def _sparse_initializer(m):
    blob = np.random.default_rng(9).standard_normal(16384).astype(np.float32)
    m.graph.sparse_initializer.append(helper.make_sparse_tensor(
        numpy_helper.from_array(blob, "sp"),
        numpy_helper.from_array(np.arange(16384, dtype=np.int64) * 2, "sp_idx"), [32768]))


def _sparse_positions(m):
    """Data in which positions a sparse tensor fills."""
    pos = np.sort(np.random.default_rng(9).choice(1 << 30, 4096, replace=False))
    m.graph.sparse_initializer.append(helper.make_sparse_tensor(
        numpy_helper.from_array(np.ones(4096, np.float32), "sp"),
        numpy_helper.from_array(pos.astype(np.int64), "sp_idx"), [1 << 30]))


ONNX_PLACES = {"training_info algorithm": _training_algorithm,
               "training_info initialization": _training_initialization,
               "sparse_initializer values": _sparse_initializer,
               "sparse_initializer positions": _sparse_positions}


@pytest.mark.parametrize("place", sorted(ONNX_PLACES))
def test_onnx_places_that_hold_free_data(nexus, bundle, place):
    import bundle_fixture as bf
    from verify_helpers import codes, verify, with_model
    m = bf.student_model()
    ONNX_PLACES[place](m)
    with_model(bundle, m)
    rc, rep = verify(nexus, bundle)
    assert rc == 1, rep
    assert codes(rep, "FAIL") & {"onnx-training-info", "onnx-unreferenced-initializer",
                                 "parameters-mismatch", "onnx-not-canonical"}, rep


def test_teacher_tensor_in_a_model_local_function(nexus, release_key, tmp_path):
    """A FunctionProto's Constant holding a teacher layer, called from the
    graph: fingerprinted like the main graph's tensors."""
    t = (np.random.default_rng(11).standard_normal((128, 64)) / 8).astype(np.float32)
    f = helper.make_function("local", "Mix", ["x"], ["y"], [
        helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(t, "c")),
        helper.make_node("Transpose", ["c"], ["ct"], perm=[1, 0]),
        helper.make_node("MatMul", ["x", "ct"], ["z"]),
        helper.make_node("MatMul", ["z", "c"], ["zz"]),
        helper.make_node("Add", ["x", "zz"], ["y"])], [helper.make_opsetid("", 13)])
    m = onnx.load_from_string(student([helper.make_node("Mix", ["h0"], ["h"], domain="local")]))
    m.functions.append(f)
    m.opset_import.append(helper.make_opsetid("local", 1))
    root = ws.make_workspace(tmp_path / "ws", student=m.SerializeToString(),
                             runtime_yaml=EMBED_RT)
    teacher_onnx(root, {"encoder.layer.2.attention.self.query.weight": t})
    why = signed_build_is_refused(nexus, root, tmp_path / "bundle", release_key)
    assert "encoder.layer.2.attention.self.query.weight" in why, why
