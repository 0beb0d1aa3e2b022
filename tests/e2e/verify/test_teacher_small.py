"""The weights check (TRV-3): teacher tensors under the 4 KiB a single
match needs count together (docs/TRV.md, "Small teacher tensors"), and a
16-bit storage of a torch.save teacher is known widened to float32.  The
signed-build side of both is tests/e2e/verify/test_redteam7.py."""
import json

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import bundle_fixture as bf
from onnx_smuggling import sink_nodes
from verify_helpers import codes, verify

WIDTH = 768   # a LayerNorm vector of a base-sized teacher: 3 KiB in float32


def put_student(bundle, tensors, constants=()):
    """The fixture's student, plus each of `tensors` (name -> numpy array
    or TensorProto) as an initializer, or a Constant node for the names in
    `constants`, each used by nodes (sink_nodes)."""
    nodes, inits = [], [numpy_helper.from_array(np.zeros((), np.float32), "zero")]
    consts = 0
    for name, a in tensors.items():
        t = a if isinstance(a, TensorProto) else numpy_helper.from_array(a, name)
        if name in constants:
            nodes.append(helper.make_node("Constant", [], [name], name=name + "_c", value=t))
            consts += int(np.prod(t.dims))
        else:
            inits.append(t)
        nodes += sink_nodes(name, to_float=t.data_type != TensorProto.FLOAT)
    m = bf.student_model(extra_nodes=nodes, extra_initializers=inits)
    bundle.meta["parameters"] = bf.human(bf.parameters(m) + consts)
    bundle.smuggle("model/student_model.onnx", m.SerializeToString())


def onnx_teacher(path, tensors):
    """An ONNX teacher holding `tensors` (name -> array or TensorProto)."""
    inits = [a if isinstance(a, TensorProto) else numpy_helper.from_array(a, n)
             for n, a in tensors.items()]
    g = helper.make_graph([helper.make_node("Identity", [inits[0].name], ["o"])], "t", [],
                          [helper.make_tensor_value_info("o", TensorProto.FLOAT, None)], inits)
    path.write_bytes(helper.make_model(g).SerializeToString())
    return path


def torch_teacher(path, tensors, **kw):
    import torch
    torch.save({n: (a if isinstance(a, torch.Tensor) else torch.from_numpy(a))
                for n, a in tensors.items()}, str(path), **kw)
    return path


def safetensors_teacher(path, tensors):
    """safetensors written by hand (u64 header length, JSON, data)."""
    header, data = {}, b""
    for n, a in tensors.items():
        raw = a.tobytes()
        header[n] = {"dtype": "F32", "shape": list(a.shape),
                     "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header).encode()
    path.write_bytes(len(h).to_bytes(8, "little") + h + data)
    return path


def vectors(n, width=WIDTH, seed=21):
    rng = np.random.default_rng(seed)
    return {f"encoder.layer.{i}.output.LayerNorm.bias":
            (rng.standard_normal(width) / 16).astype(np.float32) for i in range(n)}


def bf16(a):
    """float32 array -> (bfloat16 bits as uint16, the bfloat16 values as float32)."""
    import torch
    t = torch.from_numpy(np.ascontiguousarray(a)).to(torch.bfloat16)
    return t.view(torch.int16).numpy().view(np.uint16), t.float().numpy()


def bf16_tensor(name, bits):
    return helper.make_tensor(name, TensorProto.BFLOAT16, list(bits.shape), bits.tobytes(),
                              raw=True)


def copied(rep):
    return [f for f in rep["findings"] if f["code"] == "teacher-tensor-copied"]


def fails_copied(nexus, bundle, teacher, *words):
    rc, rep = verify(nexus, bundle, "--teacher", teacher)
    found = copied(rep)
    assert rc == 1 and found and all(f["severity"] == "FAIL" for f in found), rep["findings"]
    text = " ".join(f["message"] for f in found)
    assert all(w in text for w in words), text
    return text


def no_copy(nexus, bundle, teacher):
    rc, rep = verify(nexus, bundle, "--teacher", teacher)
    assert not copied(rep) and "teacher-values-copied" not in codes(rep), rep["findings"]
    assert rc == 0, rep["findings"]


# ---------------------------------------------- many small tensors, copied
SMALL = {
    # 8 x 3 KiB float32 vectors of an ONNX teacher, as initializers
    "onnx, float32 initializers": lambda tp: (
        onnx_teacher(tp / "t.onnx", vectors(8)), dict(vectors(8)), (), ["24576 bytes"]),
    # 16 x 3 KiB of a torch.save state dict, held cast to float16 (1.5 KiB each,
    # counted at the teacher's float32 size: 3 KiB)
    "pt, cast to float16": lambda tp: (
        torch_teacher(tp / "t.pt", vectors(16)),
        {f"v{i}": a.astype(np.float16) for i, a in enumerate(vectors(16).values())}, (),
        ["as float16", "49152 bytes"]),
    # 8 [24, 32] matrices (3 KiB), held transposed as torch.onnx.export writes
    "onnx, 2-D transposed": lambda tp: (
        onnx_teacher(tp / "t.onnx", {f"m{i}": a.reshape(24, 32)
                                     for i, a in enumerate(vectors(8).values())}),
        {f"w{i}": np.ascontiguousarray(a.reshape(24, 32).T)
         for i, a in enumerate(vectors(8).values())}, (), ["once transposed"]),
    # half of them in Constant nodes
    "safetensors, half in Constant nodes": lambda tp: (
        safetensors_teacher(tp / "t.safetensors", vectors(10, 640)),
        {f"k{i}": a for i, a in enumerate(vectors(10, 640).values())},
        {f"k{i}" for i in range(0, 10, 2)}, []),
    # bfloat16 storages of a torch teacher, held widened to float32
    "pt bfloat16, widened": lambda tp: (
        torch_teacher(tp / "t.pt", {n: __import__("torch").from_numpy(a).bfloat16()
                                    for n, a in vectors(12, 1000).items()}),
        {f"x{i}": bf16(a)[1] for i, a in enumerate(vectors(12, 1000).values())}, (),
        ["widened to float32"]),
    # held as bfloat16 (the teacher's float32 cast, round to nearest even)
    "onnx, cast to bfloat16": lambda tp: (
        onnx_teacher(tp / "t.onnx", vectors(16, 1024)),
        {f"y{i}": bf16_tensor(f"y{i}", bf16(a)[0])
         for i, a in enumerate(vectors(16, 1024).values())}, (), ["as bfloat16"]),
}


@pytest.mark.parametrize("case", sorted(SMALL))
def test_many_small_teacher_tensors(nexus, bundle, tmp_path, case):
    """Whole copies of teacher tensors under 4 KiB, more than 16 KiB of
    them in all, in the forms the big ones are matched in."""
    teacher, tensors, constants, words = SMALL[case](tmp_path)
    put_student(bundle, tensors, constants)
    text = fails_copied(nexus, bundle, teacher, "small teacher tensors", *words)
    assert "encoder.layer." in text or "'m" in text, text


def test_one_teacher_vector_many_times_is_counted_once(nexus, bundle, tmp_path):
    """Ten copies of one 3 KiB teacher vector carry 3 KiB of it."""
    teacher = onnx_teacher(tmp_path / "t.onnx", vectors(1))
    v = next(iter(vectors(1).values()))
    put_student(bundle, {f"c{i}": v for i in range(10)})
    no_copy(nexus, bundle, teacher)


def test_few_small_teacher_tensors_pass(nexus, bundle, tmp_path):
    """Up to 16 KiB of small teacher tensors, copied whole, is tolerated
    (docs/TRV.md: a student initialised from a few teacher norms; the
    bound is a quarter of the leak budget): 5 x 3 KiB passes, 6 fail."""
    teacher = onnx_teacher(tmp_path / "t.onnx", vectors(6))
    put_student(bundle, dict(list(vectors(6).items())[:5]))
    no_copy(nexus, bundle, teacher)
    put_student(bundle, vectors(6))
    fails_copied(nexus, bundle, teacher, "18432 bytes")


def trivial_tensors(n=WIDTH):
    """What a fresh initialisation writes without random numbers."""
    out = {}
    for i in range(12):
        out[f"layer.{i}.bias"] = np.zeros(n, np.float32)
        out[f"layer.{i}.LayerNorm.weight"] = np.ones(n, np.float32)
        out[f"layer.{i}.scale"] = np.full(n, 0.125, np.float32)
    out["position_ids"] = np.arange(256, dtype=np.int64)
    out["positions_f"] = np.arange(n, dtype=np.float32) * 0.5 - 3
    out["eye"] = np.eye(24, dtype=np.float32)
    out["causal_mask"] = np.triu(np.full((24, 24), -np.inf, np.float32), 1)
    out["half_ones"] = np.ones(n, np.float16)
    out["linspace"] = np.linspace(-1, 1, 600).astype(np.float32)
    return out


@pytest.mark.parametrize("fmt", ["onnx", "pt"])
def test_student_sharing_only_initial_values_passes(nexus, bundle, tmp_path, fmt):
    """An honest student shares its zero biases, unit norms, constant
    fills, position ids, identity and masks with any teacher of its width
    (110 KiB of them here): none of them is a teacher's."""
    tensors = trivial_tensors()
    # float32 fills of 4.4-6.2 KiB in the teacher, float16 in the student
    # (2.2-3.1 KiB each: their casts are small, and as common)
    wide = {f"fill.{k}": np.full(1100 + 50 * k, k % 2, np.float32) for k in range(10)}
    teacher = {**tensors, **wide, **vectors(2)}
    teacher = (onnx_teacher(tmp_path / "t.onnx", teacher) if fmt == "onnx"
               else torch_teacher(tmp_path / "t.pt", teacher))
    put_student(bundle, {**tensors, **{k: v.astype(np.float16) for k, v in wide.items()}},
                {"eye", "position_ids"})
    no_copy(nexus, bundle, teacher)


def test_distilled_student_trained_from_scratch_passes(nexus, bundle, tmp_path):
    """A real-shaped pair: a teacher and a narrower student of the same
    family (embeddings, LayerNorms, biases), the student trained from its
    own initialisation on the teacher's outputs; every small tensor it has
    (LayerNorms, biases) is its own."""
    import torch
    torch.manual_seed(0)

    def net(hidden):
        return torch.nn.Sequential(
            torch.nn.Embedding(len(bf.VOCAB), 96), torch.nn.LayerNorm(96),
            torch.nn.Linear(96, hidden), torch.nn.GELU(), torch.nn.LayerNorm(hidden),
            torch.nn.Linear(hidden, 96), torch.nn.LayerNorm(96), torch.nn.Linear(96, 4))

    teacher, student = net(256), net(128)
    ids = torch.randint(0, len(bf.VOCAB), (16, 8))
    for model, target in ((teacher, None), (student, teacher)):
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        for _ in range(5):
            out = model(ids).mean(1)
            goal = target(ids).mean(1).detach() if target else torch.ones_like(out)
            loss = ((out - goal) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    path = torch_teacher(tmp_path / "t.pt", teacher.state_dict())
    put_student(bundle, {f"s.{k}": v.detach().numpy().copy()
                         for k, v in student.state_dict().items()})
    no_copy(nexus, bundle, path)


# ------------------------------------ 16-bit storages of a torch teacher
def torch_16bit(tmp_path, shape, dtype="bfloat16", seed=3, **kw):
    """A teacher .pt whose `encoder.layer.5.intermediate.dense` is a
    16-bit storage; returns (path, its values widened to float32)."""
    import torch
    a = (np.random.default_rng(seed).standard_normal(shape) / 8).astype(np.float32)
    t = torch.from_numpy(a).to(getattr(torch, dtype))
    other = torch.from_numpy(a[::-1].copy() * 2).to(getattr(torch, dtype))
    p = torch_teacher(tmp_path / "t.pt", {"encoder.layer.4.output.dense": other,
                                          "encoder.layer.5.intermediate.dense": t}, **kw)
    return p, t.float().numpy()


PT16 = {
    "bfloat16 [256, 64]": dict(shape=(256, 64)),
    "bfloat16 [3000]": dict(shape=(3000,)),
    "bfloat16, pickle protocol 4": dict(shape=(128, 48), pickle_protocol=4),
    "float16 [64, 96]": dict(shape=(64, 96), dtype="float16"),
}


@pytest.mark.parametrize("case", sorted(PT16))
def test_sixteen_bit_torch_storage_widened(nexus, bundle, tmp_path, case):
    """The storage's type is read from the pickle (never run): the
    student holding it widened to float32 is found, named by its
    state-dict key."""
    path, wide = torch_16bit(tmp_path, **PT16[case])
    put_student(bundle, {"W2": wide})
    fails_copied(nexus, bundle, path, "'encoder.layer.5.intermediate.dense (t/data/1) "
                 "widened to float32'")


def test_bfloat16_torch_storage_widened_transposed(nexus, bundle, tmp_path):
    """A [out, in] bfloat16 Linear weight, held widened in the [in, out]
    order torch.onnx.export writes; and cast again to float16."""
    path, wide = torch_16bit(tmp_path, (64, 256))
    put_student(bundle, {"W2": np.ascontiguousarray(wide.T)})
    fails_copied(nexus, bundle, path, "widened to float32", "once transposed")
    put_student(bundle, {"W2": wide.astype(np.float16)})
    fails_copied(nexus, bundle, path, "widened to float32 as float16")


def test_bfloat16_torch_storages_of_a_module(nexus, bundle, tmp_path):
    """A real module's state dict saved in bfloat16 (nested names,
    parameters): one Linear weight held widened is named by its key."""
    import torch
    torch.manual_seed(1)
    m = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(),
                            torch.nn.Linear(128, 64)).to(torch.bfloat16)
    path = torch_teacher(tmp_path / "t.pt", m.state_dict())
    put_student(bundle, {"W2": m[2].weight.detach().float().numpy()})
    fails_copied(nexus, bundle, path, "'2.weight (t/data/2) widened to float32'")


def test_small_teacher_tensors_concatenated(nexus, bundle, tmp_path):
    """24 teacher vectors of 3 KiB laid end to end in one student tensor
    (72 KiB): no whole copy of any, but each is found whole inside it
    (fingerprint_pattern.c) and counted in the small-tensor sum."""
    teacher = onnx_teacher(tmp_path / "t.onnx", vectors(24))
    put_student(bundle, {"big": np.concatenate(list(vectors(24).values()))})
    fails_copied(nexus, bundle, teacher, "small teacher tensors", "'big'", "73728 bytes")


# ------------------------------ one sum for every kind (docs/TRV.md "Why 16 KiB")
def _layer(seed=70):
    """A 64 KiB teacher layer."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((256, 64)) / 8).astype(np.float32)


def _kept_in_place(t, frac, seed=71):
    """t with frac of its elements kept in place, the rest noise of its scale."""
    rng = np.random.default_rng(seed)
    keep = rng.random(t.shape) < frac
    return np.where(keep, t, (rng.standard_normal(t.shape) / 8).astype(np.float32))


# each part carries 12-13 KiB of teacher weights (at float32 size), under
# the 16 KiB bound alone; the vectors are 8 x 3 KiB, the layer 64 KiB
KINDS = {
    "whole": lambda vs, layer: {f"w{i}": vs[i] for i in range(4)},
    # 6 KiB stored, 12 KiB of the teacher's float32 values
    "whole, float16": lambda vs, layer: {f"h{i}": vs[i].astype(np.float16) for i in range(4)},
    "pooled": lambda vs, layer: {f"p{i}": (vs[4 + i][::-1] * np.float32(-3)).copy()
                                 for i in range(4)},
    "kept in place": lambda vs, layer: {"k": _kept_in_place(layer, 0.2)},
}


@pytest.mark.parametrize("kinds", [("whole", "kept in place"), ("whole", "pooled"),
                                   ("pooled", "kept in place"),
                                   ("whole", "pooled", "kept in place"),
                                   ("whole, float16", "kept in place")])
def test_kinds_of_copies_count_in_one_sum(nexus, bundle, tmp_path, kinds):
    """Review A of stop 20: each kind judged in a sum of its own let a
    student carry just under 16 KiB by each.  Each part alone passes;
    together they are one sum, over the bound, and every part is named."""
    vs = list(vectors(8).values())
    layer = _layer()
    teacher = onnx_teacher(tmp_path / "t.onnx",
                           {**vectors(8), "encoder.layer.0.intermediate.dense.weight": layer})
    for k in kinds:
        put_student(bundle, KINDS[k](vs, layer))
        no_copy(nexus, bundle, teacher)
    put_student(bundle, {n: a for k in kinds for n, a in KINDS[k](vs, layer).items()})
    rc, rep = verify(nexus, bundle, "--teacher", teacher)
    fails = [f for f in rep["findings"] if f["severity"] == "FAIL"]
    assert rc == 1 and fails, rep["findings"]
    text = " ".join(f["message"] for f in fails)
    assert "counted at the teacher's float32 size" in text, text
    # each part named (a reversed copy may be found whole as well as pooled)
    for k, words in (("whole", ("whole copies of small teacher tensors",)),
                     ("pooled", ("small teacher tensors pooled",
                                 "whole copies of small teacher tensors")),
                     ("kept in place", ("kept in part",))):
        assert any(w in text for w in words) or not any(x.startswith(k) for x in kinds), \
            (k, text)



def test_an_accepted_tensor_leaves_the_one_sum(nexus, bundle, tmp_path):
    """--accept-shared NAME takes that student tensor's share out of the
    sum: 12 KiB of whole vectors and 13 KiB kept in place FAIL together,
    and pass with the kept tensor accepted (an INFO names it)."""
    vs = list(vectors(8).values())
    layer = _layer()
    teacher = onnx_teacher(tmp_path / "t.onnx",
                           {**vectors(8), "encoder.layer.0.intermediate.dense.weight": layer})
    put_student(bundle, {**KINDS["whole"](vs, layer), **KINDS["kept in place"](vs, layer)})
    rc, rep = verify(nexus, bundle, "--teacher", teacher)
    assert rc == 1, rep["findings"]
    rc, rep = verify(nexus, bundle, "--teacher", teacher, "--accept-shared", "k")
    assert rc == 0 and "teacher-tensor-allowed" in codes(rep), rep["findings"]


def test_an_accepted_name_covers_no_small_tensors_inside_it(nexus, bundle, tmp_path):
    """Review of stop 21: small teacher vectors found whole inside a larger
    student tensor were recorded like the student tensor being one, so an
    accepted name covered 24 of them (72 KiB) stacked in it.  An accepted
    name covers a whole copy; small tensors inside it are pieces."""
    vs = vectors(24)
    teacher = onnx_teacher(tmp_path / "t.onnx", vs)
    put_student(bundle, {"big": np.concatenate(list(vs.values()))})
    rc, rep = verify(nexus, bundle, "--teacher", teacher, "--accept-shared", "big")
    assert rc == 1 and codes(rep, "FAIL") & {"teacher-tensor-copied",
                                             "teacher-values-copied"}, rep["findings"]


def test_a_small_copy_inside_hides_no_part_kept_in_place(nexus, bundle, tmp_path):
    """Review of stop 21: a 3 KiB teacher vector written over the head of
    each of three layers kept 45% in place hid those parts (the check
    skipped a tensor that held any small copy)."""
    from .test_teacher_partial import _kept, _layers
    layers, v = _layers(), next(iter(vectors(1).values()))
    teacher = onnx_teacher(tmp_path / "t.onnx", {**layers, **vectors(1)})
    rng = np.random.default_rng(51)
    hid = {}
    for i, t in enumerate(layers.values()):
        b = _kept(t, 0.45, rng).reshape(-1).copy()
        b[:v.size] = v
        hid[f"w{i}"] = b.reshape(t.shape)
    put_student(bundle, hid)
    rc, rep = verify(nexus, bundle, "--teacher", teacher)
    assert rc == 1 and "teacher-values-copied" in codes(rep, "FAIL"), rep["findings"]


# ---------------- review B of stop 21: closed (values3)
def test_kinds_side_by_side_in_one_student_tensor_add_up(nexus, bundle, tmp_path):
    """One student tensor of the layer's size: 4 teacher vectors reversed
    and scaled by -3 (pooled, 12 KiB) written at its head, 20% of the
    layer kept in place in the rest (~10 KiB).  Each alone is under the
    bound; counted at the tensor's largest kind, together they passed."""
    vs = list(vectors(8).values())
    layer = _layer()
    teacher = onnx_teacher(tmp_path / "t.onnx",
                           {**vectors(8), "encoder.layer.0.intermediate.dense.weight": layer})
    k = _kept_in_place(layer, 0.2).reshape(-1)
    put_student(bundle, {"k": k[4 * WIDTH:].copy()})
    put_student(bundle, {"k": k.reshape(layer.shape)})
    no_copy(nexus, bundle, teacher)
    k[:4 * WIDTH] = np.concatenate([v[::-1] * np.float32(-3) for v in vs[:4]])
    put_student(bundle, {"k": k.reshape(layer.shape)})
    rc, rep = verify(nexus, bundle, "--teacher", teacher)
    text = " ".join(f["message"] for f in rep["findings"] if f["severity"] == "FAIL")
    assert rc == 1 and "kept in part" in text and "pooled" in text, rep["findings"]


def test_whole_copies_of_a_float16_teachers_own_vectors_count_at_float32_size(
        nexus, bundle, tmp_path):
    """8 vectors of a float16 safetensors teacher held whole, as float16:
    12 KiB stored, 24 KiB at the float32 size every other part counts at."""
    from .test_teacher_partial import _st16_teacher
    vs = {n: v.astype(np.float16) for n, v in vectors(8).items()}
    teacher = _st16_teacher(tmp_path / "t.safetensors",
                            {n: v.view(np.uint16) for n, v in vs.items()}, "F16")
    put_student(bundle, {f"h{i}": v for i, v in enumerate(list(vs.values())[:4])})
    no_copy(nexus, bundle, teacher)
    put_student(bundle, {f"h{i}": v for i, v in enumerate(vs.values())})
    fails_copied(nexus, bundle, teacher, "small teacher tensors")
