"""export.quantize: int8 (issue #19).  Quantized students are run by the
bundle's own runtime (ONNX Runtime) and compared with the float student
run the same way; exports must pass onnx.checker (full check) and the
build's own verify (canonical ONNX, budget, fingerprints)."""
import json
import shutil
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import ROOT, run
from workspace import VOCAB, make_workspace

SPAM = ROOT / "examples/spam-distill"


def build(nexus, ws, out):
    r = run(nexus, "build", ws, "-o", out, "--json")
    assert r.returncode == 0, r.stderr + r.stdout
    return json.loads(r.stdout)


def run_texts(bundle, texts):
    args = [bundle / "bin/nexus_cli", "run"]
    for t in texts:
        args += ["--text", t]
    r = run(*args)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def export(nexus, src, dst, *args):
    return run(nexus, "inspect", src, "--export-to", dst, "--json", *args)


def spam_ws(tmp_path, name, extra=""):
    ws = tmp_path / name
    shutil.copytree(SPAM, ws, ignore=shutil.ignore_patterns("nexus_bundle_v1"))
    with open(ws / "nexus.yaml", "a") as f:
        f.write(extra)
    return ws


@pytest.fixture(scope="module")
def spam_bundles(nexus, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("spam")
    f = build(nexus, spam_ws(tmp, "f"), tmp / "f_out")
    q = build(nexus, spam_ws(tmp, "q", "export: {quantize: int8}\n"), tmp / "q_out")
    return tmp / "f_out", f, tmp / "q_out", q


def test_spam_int8_accuracy_within_half_a_point(spam_bundles):
    fdir, f, qdir, q = spam_bundles
    rows = [json.loads(x) for x in (SPAM / "artifacts/test_sample.jsonl").read_text().splitlines()]
    texts = [r["text"] for r in rows]
    fr, qr = run_texts(fdir, texts), run_texts(qdir, texts)
    acc = lambda res: 100.0 * np.mean([a["label"] == r["true_label"] for a, r in zip(res, rows)])
    print(f"spam-distill test sample: fp32 {acc(fr):.1f}%  int8 {acc(qr):.1f}%")
    assert abs(acc(fr) - acc(qr)) <= 0.5
    agree = np.mean([a["label"] == b["label"] for a, b in zip(fr, qr)])
    assert agree >= 0.98


def test_spam_int8_manifest_and_size(spam_bundles):
    fdir, f, qdir, q = spam_bundles
    man = json.loads((qdir / "manifest.json").read_text())
    assert man["model_metadata"]["quantization"] == "int8"
    assert json.loads((fdir / "manifest.json").read_text())["model_metadata"]["quantization"] == "none"
    fsize = (fdir / "model/student_model.onnx").stat().st_size
    qsize = (qdir / "model/student_model.onnx").stat().st_size
    assert qsize < 0.3 * fsize, (qsize, fsize)
    m = onnx.load(str(qdir / "model/student_model.onnx"))
    onnx.checker.check_model(m, full_check=True)
    ops = [n.op_type for n in m.graph.node]
    assert ops.count("MatMulInteger") == 8 and ops.count("DynamicQuantizeLinear") == 8
    int8 = {t.name for t in m.graph.initializer if t.data_type == TensorProto.INT8}
    assert "tok.weight/int8" in int8
    assert not any(t.name == "tok.weight" for t in m.graph.initializer)


def embedder(dim=64, vocab=len(VOCAB), seed=3):
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((vocab, dim)).astype(np.float32)
    w1 = (rng.standard_normal((dim, dim)) / np.sqrt(dim)).astype(np.float32)
    w2 = (rng.standard_normal((dim, dim)) / np.sqrt(dim)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["embeddings.weight", "input_ids"], ["emb"], name="embed"),
        helper.make_node("MatMul", ["emb", "dense1.weight"], ["h1"], name="dense1"),
        helper.make_node("Tanh", ["h1"], ["a1"]),
        helper.make_node("MatMul", ["a1", "dense2.weight"], ["last_hidden_state"], name="dense2"),
    ]
    g = helper.make_graph(
        nodes, "embedder",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT,
                                       ["batch", "seq", dim])],
        [numpy_helper.from_array(emb, "embeddings.weight"),
         numpy_helper.from_array(w1, "dense1.weight"),
         numpy_helper.from_array(w2, "dense2.weight")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    return m


# task: raw (the hidden states themselves): on main at the time of writing,
# the liveness check (dead-initializer) saw no change in an embedding task's
# outputs for this model, float or not
EMBED_RT = """\
task: raw
max_sequence_length: 32
batch_size: 1
threads: 1
integrity: full
python_packages: [numpy, onnxruntime]
"""


def test_embedder_int8_cosine(nexus, tmp_path):
    model = embedder().SerializeToString()
    texts = ["free money, click now", "lunch at noon tomorrow?", "win a prize now!",
             "meeting tomorrow at noon", "click, click, click"]
    out = {}
    for mode in ("none", "int8"):
        ws = make_workspace(tmp_path / mode, student=model, runtime_yaml=EMBED_RT,
                            extra_yaml=f"export: {{quantize: {mode}, quantize_min_elements: 512}}\n")
        build(nexus, ws, tmp_path / f"{mode}_out")
        out[mode] = [np.array(r["outputs"]["last_hidden_state"]).ravel()
                     for r in run_texts(tmp_path / f"{mode}_out", texts)]
    m = onnx.load(str(tmp_path / "int8_out/model/student_model.onnx"))
    assert sum(t.data_type == TensorProto.INT8 for t in m.graph.initializer) == 3
    cos = [float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) for a, b in zip(out["none"], out["int8"])]
    print("embedder cosine int8 vs fp32:", [round(c, 5) for c in cos])
    assert min(cos) >= 0.99


def test_exclude_and_min_elements_keep_float(nexus, tmp_path):
    src = tmp_path / "e.onnx"
    onnx.save(embedder(), str(src))
    r = export(nexus, src, tmp_path / "a.onnx", "--quantize", "int8", "--quantize-exclude",
               "dense2", "--quantize-exclude", "embeddings.*")
    assert r.returncode == 0, r.stderr
    m = onnx.load(str(tmp_path / "a.onnx"))
    names = {t.name: t.data_type for t in m.graph.initializer}
    assert names["dense1.weight/int8"] == TensorProto.INT8
    assert names["dense2.weight"] == TensorProto.FLOAT
    assert names["embeddings.weight"] == TensorProto.FLOAT
    assert json.loads(r.stdout)["quantized_tensors"] == 1
    onnx.checker.check_model(m, full_check=True)


@pytest.mark.parametrize("vocab, dim", [(128, 64), (2048, 1536)])
def test_int8_values_are_per_channel_symmetric(nexus, tmp_path, vocab, dim):
    """(2048, 1536): weights of 3 and 4 chunks of 4 MiB, quantized two
    chunks at a time on two threads, must give the same bytes."""
    src = tmp_path / "e.onnx"
    em = embedder(vocab=vocab, dim=dim)
    onnx.save(em, str(src))
    r = export(nexus, src, tmp_path / "a.onnx", "--quantize", "int8")
    assert r.returncode == 0, r.stderr
    w = {t.name: numpy_helper.to_array(t) for t in em.graph.initializer}
    q = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(tmp_path / "a.onnx")).graph.initializer}
    a = w["dense1.weight"]
    scale = np.abs(a).max(axis=0) / np.float32(127)
    assert q["dense1.weight/scale"].shape == (a.shape[1],)
    np.testing.assert_array_equal(q["dense1.weight/scale"], scale)
    np.testing.assert_array_equal(q["dense1.weight/int8"], np.clip(np.rint(a / scale), -127, 127))
    e = w["embeddings.weight"]
    rs = (np.abs(e).max(axis=1) / np.float32(127))[:, None]
    np.testing.assert_array_equal(q["embeddings.weight/scale"], rs)
    np.testing.assert_array_equal(q["embeddings.weight/int8"], np.clip(np.rint(e / rs), -127, 127))


@pytest.mark.parametrize("mode", ["int8", "fp16", "int4"])
def test_threads_write_the_same_bytes(nexus, tmp_path, mode):
    """Weights of 3 and 4 buffers of 4 MiB (MatMul per column, embedding
    per row; int4: columns of MatMulNBits, rows of GatherBlockQuantized)
    quantized by 1, 2 and 8 threads: the same model and data file byte for
    byte; a NaN in a later buffer gives the same error."""
    m = embedder(vocab=2048, dim=1536)
    src = tmp_path / "e.onnx"
    onnx.save(m, str(src))
    outs = {}
    for t in ("1", "2", "8"):
        d = tmp_path / f"t{t}"
        d.mkdir()
        r = export(nexus, src, d / "m.onnx", "--quantize", mode, "--quantize-threads", t,
                   "--external-data", "always")
        assert r.returncode == 0, r.stderr
        outs[t] = [(d / f).read_bytes() for f in ("m.onnx", "student_model.onnx.data")]
    assert outs["1"] == outs["2"] == outs["8"]
    a = numpy_helper.to_array(m.graph.initializer[0]).copy()
    a[1900, 7] = np.nan
    m.graph.initializer[0].CopyFrom(numpy_helper.from_array(a, "embeddings.weight"))
    onnx.save(m, str(src))
    errs = set()
    for t in ("1", "2", "8"):
        r = export(nexus, src, tmp_path / f"bad{t}.onnx", "--quantize", mode,
                   "--quantize-threads", t)
        assert r.returncode == 3 and f"element {1900 * 1536 + 7}" in r.stderr, r.stderr
        errs.add(r.stderr)
    assert len(errs) == 1
    r = export(nexus, src, tmp_path / "x.onnx", "--quantize", mode, "--quantize-threads", "9")
    assert r.returncode == 2 and "--quantize-threads takes 1 to 8" in r.stderr, r.stderr


def test_external_weights_quantized_into_page_aligned_data(nexus, tmp_path):
    m = embedder(dim=256, vocab=512)
    src = tmp_path / "e.onnx"
    onnx.save(m, str(src))
    dst = tmp_path / "a.onnx"
    r = export(nexus, src, dst, "--quantize", "int8", "--external-data", "always")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["quantized_tensors"] == 3
    assert rep["quantized_bytes"] < 0.27 * rep["quantized_float_bytes"]
    out = onnx.load(str(dst), load_external_data=False)
    ext = [t for t in out.graph.initializer if t.data_location == TensorProto.EXTERNAL]
    assert {t.name for t in ext} >= {"dense1.weight/int8", "embeddings.weight/int8"}
    for t in ext:
        e = {x.key: x.value for x in t.external_data}
        assert int(e["offset"]) % 4096 == 0
    full = onnx.load(str(dst))
    onnx.checker.check_model(full, full_check=True)
    q = {t.name: numpy_helper.to_array(t) for t in full.graph.initializer}
    assert q["embeddings.weight/int8"].shape == (512, 256)


@pytest.mark.parametrize("bad, mode", [("nan", "int8"), ("inf", "int8"), ("nan", "fp16")])
def test_non_finite_weight_names_the_tensor(nexus, tmp_path, bad, mode):
    m = embedder()
    a = numpy_helper.to_array(m.graph.initializer[1]).copy()
    a[3, 5] = np.nan if bad == "nan" else np.inf
    m.graph.initializer[1].CopyFrom(numpy_helper.from_array(a, "dense1.weight"))
    src, dst = tmp_path / "e.onnx", tmp_path / "a.onnx"
    onnx.save(m, str(src))
    r = export(nexus, src, dst, "--quantize", mode)
    assert r.returncode == 3, r.stderr
    assert "dense1.weight" in r.stderr and ("NaN" if bad == "nan" else "infinity") in r.stderr
    assert f"no {mode} form" in r.stderr and "element 197" in r.stderr
    assert not dst.exists()


def test_computed_matmul_weight_is_refused(nexus, tmp_path):
    m = embedder()
    w = m.graph.initializer[1]
    m.graph.node[1].input[1] = "dense1.weight_t"
    m.graph.node.insert(1, helper.make_node("Transpose", ["dense1.weight"], ["dense1.weight_t"],
                                            perm=[1, 0], name="t"))
    src, dst = tmp_path / "e.onnx", tmp_path / "a.onnx"
    onnx.save(m, str(src))
    r = export(nexus, src, dst, "--quantize", "int8")
    assert r.returncode == 2, r.stderr
    assert "dense1" in r.stderr and "Transpose" in r.stderr and "quantize_exclude" in r.stderr
    assert not dst.exists()
    assert w.name == "dense1.weight"
    # listed in quantize_exclude it stays float, and the rest is quantized
    r = export(nexus, src, dst, "--quantize", "int8", "--quantize-exclude", "dense1")
    assert r.returncode == 0, r.stderr


def test_already_quantized_is_refused(nexus, tmp_path):
    src, once, twice = tmp_path / "e.onnx", tmp_path / "a.onnx", tmp_path / "b.onnx"
    onnx.save(embedder(), str(src))
    assert export(nexus, src, once, "--quantize", "int8").returncode == 0
    r = export(nexus, once, twice, "--quantize", "int8")
    assert r.returncode == 2 and "already quantized" in r.stderr, r.stderr
    assert not twice.exists()
    # without quantize it exports as it is
    assert export(nexus, once, twice).returncode == 0


def test_quantize_config_is_checked(nexus, tmp_path):
    ws = make_workspace(tmp_path / "w", extra_yaml="export: {quantize: int3}\n")
    r = run(nexus, "build", ws, "-o", tmp_path / "out")
    assert r.returncode == 2 and "export.quantize" in r.stderr
    ws = make_workspace(tmp_path / "w2", extra_yaml="export: {quantize_tolerance: 2}\n")
    r = run(nexus, "build", ws, "-o", tmp_path / "out")
    assert r.returncode == 2 and "quantize_tolerance" in r.stderr


def copied_teacher_ws(tmp_path, name, quantize="int8", dim=64):
    """An embedder student whose three weights are teacher tensors: the
    embedding and dense2 copied from the teacher ONNX (as stored), dense1
    from the torch checkpoint's Linear weight (stored [out, in],
    transposed by the export)."""
    import torch
    m = embedder(vocab=128, dim=dim)
    w = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    ws = make_workspace(tmp_path / name, student=m.SerializeToString(), runtime_yaml=EMBED_RT,
                        extra_yaml=f"export: {{quantize: {quantize}}}\n")
    torch.save({"state_dict": {"enc.weight": torch.tensor(w["dense1.weight"].T.copy())}},
               str(ws / "checkpoints/teacher.pt"))
    g = helper.make_graph(
        [helper.make_node("Gather", ["enc_emb", "ids"], ["e"]),
         helper.make_node("MatMul", ["e", "enc_out"], ["y"])], "teacher",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["s"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["s", dim])],
        [numpy_helper.from_array(w["embeddings.weight"], "enc_emb"),
         numpy_helper.from_array(w["dense2.weight"], "enc_out")])
    t = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    t.ir_version = 7
    onnx.save(t, str(ws / "artifacts/teacher.onnx"))
    return ws


def test_teacher_tensor_copied_then_quantized_fails_the_build(nexus, tmp_path):
    ws = copied_teacher_ws(tmp_path, "w")
    r = run(nexus, "build", ws, "-o", tmp_path / "out")
    assert r.returncode == 1, r.stderr
    assert "as int8" in r.stderr and "/int8" in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("shared, form", [("embeddings.weight/int8", "enc_emb as int8 per row"),
                                          ("dense2.weight/int8", "enc_out as int8 per column"),
                                          ("dense1.weight/int8", "as int8 transposed")])
def test_inspect_teacher_finds_each_int8_form(nexus, tmp_path, shared, form):
    ws = copied_teacher_ws(tmp_path, "w")
    dst = tmp_path / "q.onnx"
    assert export(nexus, ws / "artifacts/student.onnx", dst, "--quantize", "int8").returncode == 0
    r = run(nexus, "inspect", dst, "--json", "--teacher", ws / "artifacts/teacher.onnx",
            "--teacher", ws / "checkpoints/teacher.pt")
    assert r.returncode == 1, r.stderr
    found = {(x["tensor"], x["teacher_tensor"]) for x in json.loads(r.stdout)["shared_tensors"]}
    assert any(s == shared and form in t for s, t in found), found


def test_verify_teacher_finds_quantized_copy(nexus, tmp_path):
    """The deployment gate: a teacher file given to verify holding the
    float tensor the bundle's int8 tensor was made from."""
    import torch
    m = embedder(vocab=128)
    ws = make_workspace(tmp_path / "w", student=m.SerializeToString(), runtime_yaml=EMBED_RT,
                        extra_yaml="export: {quantize: int8}\n")
    build(nexus, ws, tmp_path / "out")
    w = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    teacher = tmp_path / "other_teacher.pt"
    torch.save({"lm.weight": torch.tensor(w["dense2.weight"].T.copy())}, str(teacher))
    r = run(nexus, "verify", tmp_path / "out", "--json", "--teacher", teacher)
    assert r.returncode == 1, r.stdout
    assert "dense2.weight/int8" in r.stdout and "as int8 transposed" in r.stdout
    r = run(nexus, "verify", tmp_path / "out", "--teacher", ws / "checkpoints/teacher.pt")
    assert r.returncode == 0, r.stdout + r.stderr


def test_allow_shared_names_the_source_tensor(nexus, tmp_path):
    ws = copied_teacher_ws(tmp_path, "w")
    with open(ws / "nexus.yaml", "a") as f:
        f.write("allow_shared_tensors:\n"
                + "".join(f"  - {{name: {n}, reason: test}}\n"
                          for n in ("embeddings.weight", "dense1.weight", "dense2.weight")))
    r = run(nexus, "build", ws, "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr


def test_accuracy_gate_compares_float_and_int8(nexus, tmp_path):
    """A tolerance of 0 on an embedding fails the build with the measured
    cosine, which must show the float model really ran (int8 against
    itself would give a cosine of 1 to 1e-15)."""
    import re
    ws = make_workspace(tmp_path / "w", student=embedder(vocab=128).SerializeToString(),
                        runtime_yaml=EMBED_RT,
                        extra_yaml="export: {quantize: int8, quantize_tolerance: 0}\n")
    r = run(nexus, "build", ws, "-o", tmp_path / "out")
    assert r.returncode == 1, r.stderr
    m = re.search(r"lowest cosine of the outputs is ([0-9.]+)", r.stderr)
    assert m and 0.99 < float(m.group(1)) < 0.999995, r.stderr
    assert "quantize_tolerance" in r.stderr and not (tmp_path / "out").exists()
    # the default tolerance (0.01) passes, and nothing of the float model is packaged
    ws = make_workspace(tmp_path / "w2", student=embedder(vocab=128).SerializeToString(),
                        runtime_yaml=EMBED_RT, extra_yaml="export: {quantize: int8}\n")
    out = build(nexus, ws, tmp_path / "out2")
    cases = json.loads((tmp_path / "out2/config/selftest.json").read_text())["cases"]
    assert out["quantization_check"]["selftest_inputs"] == len(cases) >= 2
    assert 0.99 < out["quantization_check"]["min_cosine"] < 0.999995
    assert sorted(p.name for p in (tmp_path / "out2/model").iterdir()) == ["student_model.onnx",
                                                                         "tokenizer"]


def test_spam_gate_labels(spam_bundles):
    fdir, f, qdir, q = spam_bundles
    cases = json.loads((qdir / "config/selftest.json").read_text())["cases"]
    assert q["quantization_check"]["selftest_inputs"] == len(cases) >= 4
    assert q["quantization_check"]["labels_agree"] == len(cases)
    assert "quantization_check" not in f


def test_inspect_shows_weights_by_dtype(nexus, spam_bundles):
    fdir, f, qdir, q = spam_bundles
    d = {}
    for k, b in (("f", fdir), ("q", qdir)):
        r = run(nexus, "inspect", b / "model/student_model.onnx", "--json")
        assert r.returncode == 0, r.stderr
        d[k] = json.loads(r.stdout)["dtypes"]
    assert "int8" not in d["f"] and d["q"]["int8"]["tensors"] == 9
    assert d["q"]["int8"]["bytes"] + d["q"]["float"]["bytes"] < 0.3 * d["f"]["float"]["bytes"]


@pytest.mark.parametrize("mode, k, n", [("int8", 16384, 32768),   # 2 GiB + of float32
                                        ("fp16", 8192, 8192)])     # 256 MiB
def test_over_2gb_external_weight_streams_in_bounded_memory(nexus, tmp_path, mode, k, n):
    """A 2.1 GB float32 MatMul weight in external data (a sparse file: the
    values do not matter here) is quantized tensor by tensor: peak RSS of
    the export stays far below the tensor (fixed buffer + scales); fp16
    streams the same way (a smaller tensor: its output is half the input)."""
    data = tmp_path / "w.bin"
    with open(data, "wb") as f:
        f.truncate(k * n * 4)
    w = TensorProto(name="big.weight", data_type=TensorProto.FLOAT, dims=[k, n],
                    data_location=TensorProto.EXTERNAL)
    for key, v in (("location", "w.bin"), ("offset", "0"), ("length", str(k * n * 4))):
        e = w.external_data.add()
        e.key, e.value = key, v
    g = helper.make_graph([helper.make_node("MatMul", ["x", "big.weight"], ["y"], name="mm")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    src = tmp_path / "big.onnx"
    src.write_bytes(m.SerializeToString())
    out = tmp_path / "out"
    out.mkdir()
    # through bench/rusage.c: a child forked from this (large) Python process
    # would carry the process's RSS into its ru_maxrss
    tool, rss = tmp_path / "rusage", tmp_path / "rss"
    subprocess.run(["cc", "-O2", "-o", tool, ROOT / "bench/rusage.c"], check=True)
    r = run(tool, rss, nexus, "inspect", src, "--export-to", out / "m.onnx", "--quantize",
            mode, "--json")
    assert r.returncode == 0, r.stderr
    stdout = r.stdout
    rep = json.loads(stdout)
    assert rep["quantized_tensors"] == 1 and rep["quantized_float_bytes"] == k * n * 4
    width = 1 if mode == "int8" else 2
    assert (out / "student_model.onnx.data").stat().st_size >= k * n * width
    assert int(rss.read_text()) * 1024 < 64 << 20, rss.read_text()
    q = onnx.load(str(out / "m.onnx"), load_external_data=False)
    t = {x.name: x for x in q.graph.initializer}
    w = t[f"big.weight/{mode}"]
    assert list(w.dims) == [k, n] and w.data_location == TensorProto.EXTERNAL
    assert w.data_type == (TensorProto.INT8 if mode == "int8" else TensorProto.FLOAT16)
    if mode == "int8":
        assert list(t["big.weight/scale"].dims) == [n]



def spam_quantized(nexus, spam_bundles, tmp_path, mode):
    """The spam student built with export.quantize: mode, and the labels of
    the float and the quantized bundle on the 50 test texts (accuracy
    printed)."""
    fdir = spam_bundles[0]
    q = build(nexus, spam_ws(tmp_path, mode, f"export: {{quantize: {mode}}}\n"),
              tmp_path / f"{mode}_out")
    qdir = tmp_path / f"{mode}_out"
    rows = [json.loads(x) for x in (SPAM / "artifacts/test_sample.jsonl").read_text().splitlines()]
    texts = [r["text"] for r in rows]
    fr, qr = run_texts(fdir, texts), run_texts(qdir, texts)
    acc = lambda res: 100.0 * np.mean([a["label"] == r["true_label"] for a, r in zip(res, rows)])
    print(f"spam-distill test sample: fp32 {acc(fr):.1f}%  {mode} {acc(qr):.1f}%")
    return q, qdir, fr, qr


# ---------------------------------------------------------------- int4
def test_spam_int4_accuracy_and_form(nexus, spam_bundles, tmp_path):
    """int4 (MatMulNBits, block 32): the spam student's accuracy on the 50
    test texts in the repository; one text is 2 points, so "within 0.5" of
    the issue (586 texts) reads here as at most one text changing."""
    fdir = spam_bundles[0]
    q, qdir, fr, qr = spam_quantized(nexus, spam_bundles, tmp_path, "int4")
    assert sum(a["label"] != b["label"] for a, b in zip(fr, qr)) <= 1
    cases = json.loads((qdir / "config/selftest.json").read_text())["cases"]
    assert q["quantization"] == "int4" and q["quantization_check"]["labels_agree"] == len(cases)
    m = onnx.load(str(qdir / "model/student_model.onnx"))
    onnx.checker.check_model(m, full_check=True)
    nb = [n for n in m.graph.node if n.op_type == "MatMulNBits"]
    assert len(nb) == 8 and all(n.domain == "com.microsoft" for n in nb)
    assert {o.domain: o.version for o in m.opset_import}["com.microsoft"] == 1
    # the embedding (d 64: whole blocks of 32) in com.microsoft.GatherBlockQuantized
    g = [n for n in m.graph.node if n.op_type == "GatherBlockQuantized"]
    assert len(g) == 1 and g[0].domain == "com.microsoft" and g[0].input[0] == "tok.weight/int4"
    assert not any(t.data_type == TensorProto.INT8 for t in m.graph.initializer)
    fsize = (fdir / "model/student_model.onnx").stat().st_size
    qsize = (qdir / "model/student_model.onnx").stat().st_size
    print(f"spam-distill int4 model: {qsize} bytes, {qsize / fsize:.3f}x of fp32")
    # 0.19x with the embedding int8; the floor at block 32 is 5/32 = 0.156x, and
    # this small model keeps 16 KB of float position embeddings and 5% of
    # scales beside it (the DistilBERT-shaped bench model: 0.157x)
    assert qsize <= 0.185 * fsize, (qsize, fsize)


def test_int4_packing_matches_reference(nexus, tmp_path):
    src = tmp_path / "e.onnx"
    em = embedder(vocab=128, dim=80)         # K = 80: the last block of 32 is padded
    onnx.save(em, str(src))
    r = export(nexus, src, tmp_path / "a.onnx", "--quantize", "int4", "--quantize-block", "32")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["quantized_int4"] == 2
    w = {t.name: numpy_helper.to_array(t) for t in em.graph.initializer}["dense1.weight"]
    q = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(tmp_path / "a.onnx")).graph.initializer}
    k, n = w.shape
    nb = (k + 31) // 32
    col = np.zeros((n, nb * 32), np.float32)
    col[:, :k] = w.T
    blocks = col.reshape(n, nb, 32)
    scale = np.abs(blocks).max(axis=2) / np.float32(7)
    scale[scale == 0] = 1
    qv = (np.clip(np.rint(blocks / scale[:, :, None]), -7, 7) + 8).astype(np.uint8)
    packed = qv[:, :, 0::2] | (qv[:, :, 1::2] << 4)
    np.testing.assert_array_equal(q["dense1.weight/int4"], packed)
    np.testing.assert_array_equal(q["dense1.weight/scale"], scale.ravel())


def test_int4_embedding_blocks_match_reference(nexus, tmp_path):
    """An embedding whose rows fill whole blocks: GatherBlockQuantized
    data [V, D / 2] (two values a byte, low nibble first, q + 8) and scales
    [V, D / block]; one that does not (d 80, blocks of 64) stays int8."""
    src = tmp_path / "e.onnx"
    em = embedder(vocab=128, dim=64)
    onnx.save(em, str(src))
    r = export(nexus, src, tmp_path / "a.onnx", "--quantize", "int4")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["quantized_int4"] == 3
    q = onnx.load(str(tmp_path / "a.onnx"))
    onnx.checker.check_model(q, full_check=True)
    g = next(n for n in q.graph.node if n.op_type == "GatherBlockQuantized")
    assert {a.name: a.i for a in g.attribute} == {"gather_axis": 0, "quantize_axis": 1,
                                                  "block_size": 32, "bits": 4}
    t = {x.name: numpy_helper.to_array(x) for x in q.graph.initializer}
    e = {x.name: numpy_helper.to_array(x) for x in em.graph.initializer}["embeddings.weight"]
    blocks = e.reshape(128, 2, 32)
    scale = np.abs(blocks).max(axis=2) / np.float32(7)
    qv = (np.clip(np.rint(blocks / scale[:, :, None]), -7, 7) + 8).astype(np.uint8).reshape(128, 64)
    np.testing.assert_array_equal(t["embeddings.weight/int4"], qv[:, 0::2] | (qv[:, 1::2] << 4))
    np.testing.assert_array_equal(t["embeddings.weight/scale"], scale)
    onnx.save(embedder(vocab=128, dim=80), str(src))
    r = export(nexus, src, tmp_path / "b.onnx", "--quantize", "int4", "--quantize-block", "64")
    assert r.returncode == 0, r.stderr
    names = {x.name for x in onnx.load(str(tmp_path / "b.onnx")).graph.initializer}
    assert "embeddings.weight/int8" in names and "embeddings.weight/int4" not in names


def test_int4_teacher_copy_found(nexus, tmp_path):
    ws = copied_teacher_ws(tmp_path, "w", quantize="int4", dim=128)  # int4 tensors >= 4 KiB
    r = run(nexus, "build", ws, "-o", tmp_path / "out")
    assert r.returncode == 1 and "identical to" in r.stderr, r.stderr
    dst = tmp_path / "q.onnx"
    assert export(nexus, ws / "artifacts/student.onnx", dst, "--quantize", "int4").returncode == 0
    r = run(nexus, "inspect", dst, "--json", "--teacher", ws / "artifacts/teacher.onnx",
            "--teacher", ws / "checkpoints/teacher.pt")
    found = {(x["tensor"], x["teacher_tensor"]) for x in json.loads(r.stdout)["shared_tensors"]}
    assert any(s == "dense1.weight/int4" and "as int4 transposed" in t for s, t in found), found
    assert any(s == "dense2.weight/int4" and "enc_out as int4 (block 32)" in t for s, t in found), found
    # the embedding, in GatherBlockQuantized's blocks along each row
    assert any(s == "embeddings.weight/int4" and "enc_emb as int4 transposed" in t
               for s, t in found), found


# ---------------------------------------------------------------- Gemm
def torch_linear_student(tmp_path, dim=64, out=64, vocab=len(VOCAB)):
    """An embedding, then two torch Linear layers (with biases) that
    torch.onnx.export writes as Gemm(x, W[out, in], b, transB=1)."""
    import torch
    torch.manual_seed(5)

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(vocab, dim)
            self.fc1 = torch.nn.Linear(dim, dim)
            self.fc2 = torch.nn.Linear(dim, out)

        def forward(self, input_ids, attention_mask):
            h = self.emb(input_ids).reshape(-1, dim)
            y = self.fc2(torch.tanh(self.fc1(h)))
            return y.reshape(input_ids.shape[0], input_ids.shape[1], out)

    model = M().eval()
    with torch.no_grad():      # biases of the weights' scale, so they matter
        model.fc1.bias.normal_()
        model.fc2.bias.normal_()
    ids = torch.ones((1, 4), dtype=torch.long)
    path = tmp_path / "linear.onnx"
    torch.onnx.export(model, (ids, ids), str(path), input_names=["input_ids", "attention_mask"],
                      output_names=["last_hidden_state"], opset_version=13,
                      dynamic_axes={"input_ids": {0: "b", 1: "s"}, "attention_mask": {0: "b", 1: "s"}})
    m = onnx.load(str(path))
    if not any(i.name == "attention_mask" for i in m.graph.input):
        m.graph.input.append(helper.make_tensor_value_info("attention_mask", TensorProto.INT64,
                                                           ["b", "s"]))
    gemm = [n for n in m.graph.node if n.op_type == "Gemm"]
    assert len(gemm) == 2 and all(helper.get_attribute_value(a) == 1 for n in gemm
                                  for a in n.attribute if a.name == "transB")
    w = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    return m, {"fc1": w["fc1.weight"], "fc2": w["fc2.weight"]}, model


def check_gemm_values(q, w):
    """int8 of each W[out, in]: scales per row, values written [in, out]."""
    t = {x.name: numpy_helper.to_array(x) for x in q.graph.initializer}
    for name, a in w.items():
        scale = np.abs(a).max(axis=1) / np.float32(127)
        np.testing.assert_array_equal(t[f"{name}.weight/scale"], scale)
        np.testing.assert_array_equal(t[f"{name}.weight/int8"],
                                      np.clip(np.rint(a / scale[:, None]), -127, 127).T)
        assert t[f"{name}.bias"].dtype == np.float32


def test_gemm_multi_chunk_transposed(nexus, tmp_path):
    """A Gemm weight of 3 chunks (rows quantized on two threads, gathered
    and written transposed) and a NaN in its last chunk."""
    rng = np.random.default_rng(7)
    n, k = 1536, 1536
    a = rng.standard_normal((n, k)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)

    def model(weight):
        g = helper.make_graph(
            [helper.make_node("Gemm", ["x", "fc.weight", "fc.bias"], ["y"], transB=1, name="fc")],
            "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])],
            [numpy_helper.from_array(weight, "fc.weight"), numpy_helper.from_array(bias, "fc.bias")])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
        m.ir_version = 7
        return m

    src, dst = tmp_path / "g.onnx", tmp_path / "q.onnx"
    onnx.save(model(a), str(src))
    r = export(nexus, src, dst, "--quantize", "int8")
    assert r.returncode == 0, r.stderr
    check_gemm_values(onnx.load(str(dst)), {"fc": a})
    bad = a.copy()
    bad[1500, 3] = np.nan
    onnx.save(model(bad), str(src))
    r = export(nexus, src, tmp_path / "q2.onnx", "--quantize", "int8")
    assert r.returncode == 3 and f"element {1500 * k + 3}" in r.stderr, r.stderr


def test_gemm_int8_and_int4_forms(nexus, tmp_path):
    """A torch Linear's Gemm (transB 1, bias): int8 values per output
    channel written transposed [in, out] for MatMulInteger, the bias kept
    float and added after; int4 MatMulNBits blocks along the input."""
    m, w, _ = torch_linear_student(tmp_path)
    src = tmp_path / "s.onnx"
    onnx.save(m, str(src))
    r = export(nexus, src, tmp_path / "a.onnx", "--quantize", "int8")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["quantized_tensors"] == 2     # the embedding is too small
    q = onnx.load(str(tmp_path / "a.onnx"))
    onnx.checker.check_model(q, full_check=True)
    ops = [n.op_type for n in q.graph.node]
    assert "Gemm" not in ops and ops.count("MatMulInteger") == 2 and ops.count("Add") == 2
    check_gemm_values(q, w)
    r = export(nexus, src, tmp_path / "b.onnx", "--quantize", "int4")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["quantized_int4"] == 2
    q = onnx.load(str(tmp_path / "b.onnx"))
    onnx.checker.check_model(q, full_check=True)
    nb = {n.name: {a.name: a.i for a in n.attribute} for n in q.graph.node if n.op_type == "MatMulNBits"}
    assert sorted((v["K"], v["N"]) for v in nb.values()) == [(64, 64), (64, 64)]
    assert all(v["accuracy_level"] == 4 for v in nb.values())   # int8 compute (DESIGN-NOTES)
    t = {x.name: numpy_helper.to_array(x) for x in q.graph.initializer}
    a = w["fc1"]                                # [N, K]: its rows are MatMulNBits' columns
    blocks = a.reshape(64, 2, 32)
    scale = np.abs(blocks).max(axis=2) / np.float32(7)
    qv = (np.clip(np.rint(blocks / scale[:, :, None]), -7, 7) + 8).astype(np.uint8)
    np.testing.assert_array_equal(t["fc1.weight/int4"], qv[:, :, 0::2] | (qv[:, :, 1::2] << 4))
    np.testing.assert_array_equal(t["fc1.weight/scale"], scale.ravel())
    # a Gemm with alpha other than 1 is left to the float Gemm
    g = next(n for n in m.graph.node if n.op_type == "Gemm")
    g.attribute.append(helper.make_attribute("alpha", 0.5))
    onnx.save(m, str(src))
    r = export(nexus, src, tmp_path / "c.onnx", "--quantize", "int8")
    assert r.returncode == 0 and json.loads(r.stdout)["quantized_tensors"] == 1, r.stderr
    assert [n.op_type for n in onnx.load(str(tmp_path / "c.onnx")).graph.node].count("Gemm") == 1


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_gemm_quantized_bundle_runs_close_to_float(nexus, tmp_path, mode):
    """Built and run by the bundle's runtime (ONNX Runtime) against the
    float student: cosine >= 0.99; the torch checkpoint's Linear weight
    is still found in the quantized bundle (int8 / int4, transposed)."""
    import torch
    m, w, model = torch_linear_student(tmp_path, dim=128, out=128)  # int4 tensors >= 4 KiB
    texts = ["free money, click now", "lunch at noon tomorrow?", "win a prize now!",
             "meeting tomorrow at noon"]
    out = {}
    for q in ("none", mode):
        ws = make_workspace(tmp_path / q, student=m.SerializeToString(), runtime_yaml=EMBED_RT,
                            extra_yaml=f"export: {{quantize: {q}, quantize_min_elements: 512}}\n")
        build(nexus, ws, tmp_path / f"{q}_out")
        out[q] = [np.array(r["outputs"]["last_hidden_state"]).ravel()
                  for r in run_texts(tmp_path / f"{q}_out", texts)]
    cos = [float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) for a, b in zip(out["none"], out[mode])]
    print(f"torch Linear (Gemm) {mode} vs fp32 cosine:", [round(c, 5) for c in cos])
    assert min(cos) >= 0.99
    qm = onnx.load(str(tmp_path / f"{mode}_out/model/student_model.onnx"))
    assert "Gemm" not in [n.op_type for n in qm.graph.node]
    teacher = tmp_path / "teacher.pt"
    torch.save({"fc1.weight": model.fc1.weight.detach().clone()}, str(teacher))
    r = run(nexus, "verify", tmp_path / f"{mode}_out", "--json", "--teacher", teacher)
    assert r.returncode == 1 and f"fc1.weight/{mode}" in r.stdout, r.stdout
    assert f"as {mode} transposed" in r.stdout, r.stdout


# ---------------------------------------------------------------- fp16
def test_spam_fp16_accuracy_and_form(nexus, spam_bundles, tmp_path):
    """fp16: the weights stored float16, each read through a Cast to
    float32 (ONNX Runtime 1.30's CPU kernels of MatMul, Gemm, Add, Mul, Tanh,
    Softmax... are float32 only: docs/DESIGN-NOTES.md); inputs, outputs
    and compute float32, so the labels are the float student's."""
    fdir = spam_bundles[0]
    q, qdir, fr, qr = spam_quantized(nexus, spam_bundles, tmp_path, "fp16")
    assert [a["label"] for a in fr] == [b["label"] for b in qr]
    cases = json.loads((qdir / "config/selftest.json").read_text())["cases"]
    assert q["quantization"] == "fp16" and q["quantization_check"]["labels_agree"] == len(cases)
    man = json.loads((qdir / "manifest.json").read_text())
    assert man["model_metadata"]["quantization"] == "fp16"
    m = onnx.load(str(qdir / "model/student_model.onnx"))
    onnx.checker.check_model(m, full_check=True)
    half = {t.name: t for t in m.graph.initializer if t.data_type == TensorProto.FLOAT16}
    casts = {n.output[0]: n for n in m.graph.node if n.op_type == "Cast"}
    assert "tok.weight/fp16" in half and len(half) >= 9
    for name in half:
        c = casts[name[:-len("/fp16")]]
        assert list(c.input) == [name] and helper.get_attribute_value(c.attribute[0]) == 1
    # the Casts come first (the graph stays in topological order)
    assert all(n.op_type == "Cast" for n in m.graph.node[:len(half)])
    assert {i.type.tensor_type.elem_type for i in m.graph.output} == {TensorProto.FLOAT}
    fsize = (fdir / "model/student_model.onnx").stat().st_size
    qsize = (qdir / "model/student_model.onnx").stat().st_size
    print(f"spam-distill fp16 model: {qsize} bytes, {qsize / fsize:.3f}x of fp32")
    assert qsize <= 0.55 * fsize, (qsize, fsize)


def ort_node_outputs(nm, model, ids, out):
    """last_hidden_state of model for each id list, by onnxruntime-node."""
    script = """
const ort = require('onnxruntime-node'); const fs = require('fs');
(async () => {
  const [model, idsPath, out] = process.argv.slice(1);
  const s = await ort.InferenceSession.create(model, {intraOpNumThreads: 1});
  const res = [];
  for (const l of fs.readFileSync(idsPath, 'utf8').split('\\n').filter((x) => x)) {
    const ids = JSON.parse(l), t = (a) => new ort.Tensor('int64', BigInt64Array.from(a, BigInt), [1, a.length]);
    const o = await s.run({input_ids: t(ids), attention_mask: t(ids.map(() => 1))});
    res.push(Array.from(o[s.outputNames[0]].data));
  }
  fs.writeFileSync(out, JSON.stringify(res));
})().catch((e) => { console.error(e); process.exit(1); });
"""
    r = subprocess.run(["node", "-e", script, str(model), str(ids), str(out)], capture_output=True,
                       text=True, env=dict(__import__("os").environ, NODE_PATH=nm))
    assert r.returncode == 0, r.stderr
    return [np.array(x) for x in json.loads(out.read_text())]


QDTYPE = {"fp16": TensorProto.FLOAT16, "int8": TensorProto.INT8}


# int4 is not here: on this random embedder its cosine is 0.982, and the
# build's gate (tolerance 0.01) refuses it, as it should
@pytest.mark.parametrize("mode", ["fp16", "int8"])
def test_embedder_cosine_against_onnxruntime_node(nexus, tmp_path, mode):
    """The quantized bundle's hidden states (its runtime) and the quantized
    export run by onnxruntime-node, each against the fp32 student run by
    onnxruntime-node on the same ids: cosine >= 0.99 (fp16 ~0.99999)."""
    from test_runtime_parity import ort_node
    model = embedder(dim=128, vocab=128)      # every weight >= 4096 elements
    texts = ["free money, click now", "lunch at noon tomorrow?", "win a prize now!",
             "meeting tomorrow at noon", "click, click, click"]
    ws = make_workspace(tmp_path / "w", student=model.SerializeToString(), runtime_yaml=EMBED_RT,
                        extra_yaml=f"export: {{quantize: {mode}}}\n")
    out = build(nexus, ws, tmp_path / "out")
    assert out["quantization"] == mode
    assert out["quantization_check"]["min_cosine"] > (0.9999 if mode == "fp16" else 0.99)
    qm = onnx.load(str(tmp_path / "out/model/student_model.onnx"))
    assert sum(t.data_type == QDTYPE[mode] for t in qm.graph.initializer) == 3
    ours = [np.array(r["outputs"]["last_hidden_state"]).ravel()
            for r in run_texts(tmp_path / "out", texts)]
    nm = ort_node()
    if not nm:
        pytest.skip("node or the npm package onnxruntime-node not found "
                    "(bench/run.py --only realrt installs it into ~/.cache/nexus/bench/npm)")
    ids = tmp_path / "ids.jsonl"
    t = run(tmp_path / "out/bin/nexus_cli", "tokenize", *sum((["--text", x] for x in texts), []))
    ids.write_text(t.stdout)
    onnx.save(model, str(tmp_path / "fp32.onnx"))
    ref = ort_node_outputs(nm, tmp_path / "fp32.onnx", ids, tmp_path / "a.json")
    node16 = ort_node_outputs(nm, tmp_path / "out/model/student_model.onnx", ids, tmp_path / "b.json")
    cos = lambda a, b: float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    c1 = [cos(a, b) for a, b in zip(ref, ours)]
    c2 = [cos(a, b) for a, b in zip(ref, node16)]
    print(f"embedder {mode} vs fp32 (onnxruntime-node) cosine: bundle", [round(c, 6) for c in c1],
          "node", [round(c, 6) for c in c2])
    assert len(c1) == len(c2) == len(texts) and min(c1 + c2) >= 0.99


def test_fp16_values_match_torch_half(nexus, tmp_path):
    """float16 as torch casts (round to nearest even, subnormals kept), of
    any rank; min elements (4096) and quantize_exclude keep float32."""
    import torch
    m = embedder(vocab=128, dim=64)
    rng = np.random.default_rng(2)
    w = (rng.standard_normal((64, 64)) * 3e-5).astype(np.float32)   # subnormal in float16
    w[0, :4] = [65504.0, -65519.0, 1 + 2 ** -11, 2 ** -25]             # ties and edges
    m.graph.initializer[1].CopyFrom(numpy_helper.from_array(w, "dense1.weight"))
    bias = rng.standard_normal((2, 32, 64)).astype(np.float32)        # 3-D, 4096 elements
    m.graph.initializer.append(numpy_helper.from_array(bias, "b3"))
    m.graph.initializer.append(numpy_helper.from_array(bias[0, :8], "small"))  # < 4096
    m.graph.node.insert(0, helper.make_node("ReduceMean", ["b3"], ["b3r"], axes=[0, 1],
                                            keepdims=0, name="r3"))
    m.graph.node.append(helper.make_node("Add", ["last_hidden_state", "b3r"], ["o2"], name="add3"))
    m.graph.node.append(helper.make_node("Add", ["o2", "small"], ["out2"], name="add4"))
    m.graph.output.append(helper.make_tensor_value_info("out2", TensorProto.FLOAT, ["b", "s", 64]))
    src, dst = tmp_path / "e.onnx", tmp_path / "a.onnx"
    onnx.save(m, str(src))
    r = export(nexus, src, dst, "--quantize", "fp16", "--quantize-exclude", "dense2")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["quantized_tensors"] == 3
    q = onnx.load(str(dst))
    onnx.checker.check_model(q, full_check=True)
    t = {x.name: x for x in q.graph.initializer}
    a = {k: numpy_helper.to_array(v) for k, v in t.items()}
    src_w = {x.name: numpy_helper.to_array(x) for x in m.graph.initializer}
    for name in ("embeddings.weight", "dense1.weight", "b3"):
        ref = torch.from_numpy(src_w[name].copy()).half().numpy()
        assert t[name + "/fp16"].data_type == TensorProto.FLOAT16
        assert a[name + "/fp16"].shape == src_w[name].shape
        np.testing.assert_array_equal(a[name + "/fp16"].view(np.uint16), ref.view(np.uint16))
    assert t["dense2.weight"].data_type == TensorProto.FLOAT      # excluded
    assert t["small"].data_type == TensorProto.FLOAT              # under min elements
    assert rep["quantized_bytes"] == 2 * (128 * 64 + 64 * 64 + 4096)


def test_fp16_bad_weights_are_refused(nexus, tmp_path):
    """A value past float16's range names the tensor and element (NaN:
    test_non_finite_weight_names_the_tensor); a model whose weights are
    float16 already is refused; nothing is left."""
    m = embedder()
    a = numpy_helper.to_array(m.graph.initializer[1]).copy()
    a[1, 2] = 70000.0
    m.graph.initializer[1].CopyFrom(numpy_helper.from_array(a, "dense1.weight"))
    src, dst = tmp_path / "e.onnx", tmp_path / "a.onnx"
    onnx.save(m, str(src))
    r = export(nexus, src, dst, "--quantize", "fp16")
    assert r.returncode == 3, r.stderr
    assert "dense1.weight" in r.stderr and "element 66" in r.stderr and "65504" in r.stderr
    assert not dst.exists()
    onnx.save(embedder(), str(src))
    once = tmp_path / "once.onnx"
    assert export(nexus, src, once, "--quantize", "fp16").returncode == 0
    for mode in ("fp16", "int8"):
        r = export(nexus, once, dst, "--quantize", mode)
        assert r.returncode == 2 and "already quantized" in r.stderr and "float16" in r.stderr
        assert not dst.exists()


def test_fp16_teacher_copy_found_and_allowed(nexus, tmp_path):
    """A teacher tensor copied into the student and cast to float16 by the
    export is found (the fingerprints' "as float16" form); allow_shared
    names the source tensor, for fp16 and for int4 alike."""
    ws = copied_teacher_ws(tmp_path, "w", quantize="fp16")
    r = run(nexus, "build", ws, "-o", tmp_path / "out")
    assert r.returncode == 1 and "/fp16" in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()
    dst = tmp_path / "q.onnx"
    assert export(nexus, ws / "artifacts/student.onnx", dst, "--quantize", "fp16").returncode == 0
    r = run(nexus, "inspect", dst, "--json", "--teacher", ws / "artifacts/teacher.onnx")
    found = {(x["tensor"], x["teacher_tensor"]) for x in json.loads(r.stdout)["shared_tensors"]}
    assert any(s == "embeddings.weight/fp16" and "enc_emb as float16" in t for s, t in found), found
    assert any(s == "dense2.weight/fp16" and "enc_out as float16" in t for s, t in found), found
    for mode, dim in (("fp16", 64), ("int4", 128)):
        ws = copied_teacher_ws(tmp_path, f"a_{mode}", quantize=mode, dim=dim)
        y = (ws / "nexus.yaml").read_text()      # int4 of this random embedder: cosine 0.98
        (ws / "nexus.yaml").write_text(y.replace("quantize: int4}", "quantize: int4, "
                                                 "quantize_tolerance: 0.05}"))
        with open(ws / "nexus.yaml", "a") as f:
            f.write("allow_shared_tensors:\n"
                    + "".join(f"  - {{name: {n}, reason: test}}\n"
                              for n in ("embeddings.weight", "dense1.weight", "dense2.weight")))
        r = run(nexus, "build", ws, "-o", tmp_path / f"out_{mode}")
        assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------- decoders
def random_decoder_ws(root, mode, tol):
    """A small random GPT-2-shaped decoder (with past) whose near-tied
    logits int4 changes: task generation, three selftest prompts."""
    import gen_models
    tj, _ = gen_models.bytelevel_tokenizer()
    model = gen_models.decoder_onnx(320, "past", d=128, h=4, layers=2, positions=128)
    ws = make_workspace(
        root, student=model, tokenizer_files=("tokenizer.json",),
        runtime_yaml="task: generation\nmax_sequence_length: 128\nthreads: 1\n"
                     "python_packages: [numpy, onnxruntime]\n",
        config={"selftest": '["the cat", "a dog sat", "hello world"]',
                "architecture": "GPT2ish-random"},
        extra_yaml=f"export: {{quantize: {mode}, quantize_tolerance: {tol}}}\n")
    (ws / "artifacts/tokenizer/tokenizer.json").write_text(tj, encoding="utf-8")
    return ws


def test_decoder_gate_compares_greedy_tokens(nexus, tmp_path):
    """A decoder's selftest outputs are its greedy ids (outputs {}): the gate
    compares those, so int4 changing the continuation of two of the three
    prompts fails the build at tolerance 0 (it passed unseen before), and
    int8, which keeps them, passes with every prompt agreeing."""
    ws = random_decoder_ws(tmp_path / "w4", "int4", 0)
    r = run(nexus, "build", ws, "-o", tmp_path / "o4")
    assert r.returncode == 1, r.stderr
    assert "greedy tokens) agree on 1" in r.stderr and "quantize_tolerance 0" in r.stderr, r.stderr
    assert not (tmp_path / "o4").exists()
    out = build(nexus, random_decoder_ws(tmp_path / "w8", "int8", 0), tmp_path / "o8")
    # the three prompts, and the selftest's long case of a generation bundle
    assert out["quantization_check"]["labels_agree"] == out["quantization_check"]["selftest_inputs"] == 4


def test_old_opset_student_is_refused_at_build(nexus, tmp_path):
    """An opset-9 student would get DynamicQuantizeLinear (opset 11), which
    ONNX Runtime refuses to load: the build fails naming the opset, before
    the sandbox and before anything is published; without quantize it builds."""
    m = embedder(vocab=128)
    m.opset_import[0].version, m.ir_version = 9, 4
    ws = make_workspace(tmp_path / "w", student=m.SerializeToString(), runtime_yaml=EMBED_RT,
                        extra_yaml="export: {quantize: int8}\n")
    r = run(nexus, "build", ws, "-o", tmp_path / "out")
    assert r.returncode == 2, r.stderr
    assert "opset 9" in r.stderr and "DynamicQuantizeLinear" in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()
    src = tmp_path / "e9.onnx"
    onnx.save(m, str(src))
    assert export(nexus, src, tmp_path / "a.onnx").returncode == 0


@pytest.mark.parametrize("mode", ["int8", "fp16"])
def test_full_disk_during_quantized_export_leaves_nothing(nexus, tmp_path, mode):
    """The data file cannot grow past 200 KiB (RLIMIT_FSIZE, SIGXFSZ ignored:
    the write fails like a full disk): the error names the file, and neither
    the model nor its data file is left."""
    src, out = tmp_path / "e.onnx", tmp_path / "out"
    onnx.save(embedder(dim=256, vocab=512), str(src))
    out.mkdir()
    r = subprocess.run(["sh", "-c", 'trap "" XFSZ; ulimit -f 200; exec "$@"', "sh", str(nexus),
                        "inspect", str(src), "--export-to", str(out / "m.onnx"), "--quantize", mode,
                        "--external-data", "always"], capture_output=True, text=True)
    assert r.returncode == 3, r.stderr
    assert "student_model.onnx.data" in r.stderr and "File too large" in r.stderr, r.stderr
    assert list(out.iterdir()) == []


def test_tiny_gen_greedy_16_tokens_unchanged(nexus, tmp_path):
    """examples/tiny-gen (a trained decoder), int8 and int4: the greedy
    continuation of every selftest prompt is the float bundle's for the
    first 16 tokens (the bundle's runtime generating, with its cache)."""
    import yaml
    src = ROOT / "examples/tiny-gen"
    prompts = yaml.safe_load((src / "nexus.yaml").read_text())["selftest"]
    ids = {}
    for mode in ("none", "int8", "int4"):
        ws = tmp_path / f"w_{mode}"
        shutil.copytree(src, ws, ignore=shutil.ignore_patterns("nexus_bundle_v1"))
        with open(ws / "nexus.yaml", "a") as f:
            f.write(f"export: {{quantize: {mode}}}\n")
        build(nexus, ws, tmp_path / mode)
        ids[mode] = []
        for p in prompts:
            r = run(tmp_path / mode / "bin/nexus_cli", "generate", "--json", "--prompt", p,
                    "--max-new-tokens", "16")
            assert r.returncode == 0, r.stderr
            ids[mode].append(json.loads(r.stdout)["ids"][:16])
    assert all(len(x) == 16 for x in ids["none"]), ids["none"]
    assert ids["int8"] == ids["none"] and ids["int4"] == ids["none"], ids


def test_tensor_too_big_for_int4_blocks_is_refused(nexus, tmp_path):
    """K = 2^31 (a sparse 16 GiB external weight: refused before a byte is
    read): MatMulNBits' K and N are int32; the error names the tensor, and
    nothing is left."""
    k, n = 2 ** 31, 2
    w = TensorProto(name="big.weight", data_type=TensorProto.FLOAT, dims=[k, n],
                    data_location=TensorProto.EXTERNAL)
    for key, v in (("location", "w.bin"), ("offset", "0"), ("length", str(k * n * 4))):
        e = w.external_data.add()
        e.key, e.value = key, v
    with open(tmp_path / "w.bin", "wb") as f:
        f.truncate(k * n * 4)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "big.weight"], ["y"], name="mm")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    src, out = tmp_path / "big.onnx", tmp_path / "out"
    src.write_bytes(m.SerializeToString())
    out.mkdir()
    r = export(nexus, src, out / "m.onnx", "--quantize", "int4")
    assert r.returncode == 3, r.stderr
    assert "'big.weight' [2147483648, 2] is too big for the int4 block layout" in r.stderr
    assert list(out.iterdir()) == []
