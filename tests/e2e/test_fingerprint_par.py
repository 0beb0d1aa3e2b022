"""Large tensors are fingerprinted on two threads (fingerprint_par.c: a
tensor of 4 MiB or more read verbatim): a teacher's casts and canonical
forms, and a student's value sample and small-tensor scan, run beside the
chunking.  Every way of finding a copy must still find it when the
tensors on both sides are that large: whole, as a piece, cast to float16,
a float16 cast scaled and held in float32, scaled in float32, and small
teacher tensors laid inside a large student tensor; an unrelated large
tensor is not reported.  When the second thread (or its lock) cannot be
made, the result is the same or an error that says so."""
import json
import os

import numpy as np
import pytest

import export_models as em
from conftest import run
from onnx import TensorProto, helper, numpy_helper

BIG = (1100, 1000)   # 4.4 MB of float32: over the threaded reader's 4 MiB


def onnx_file(path, weights):
    import onnx
    nodes = [helper.make_node("Identity", [k], [k + "_out"]) for k in weights]
    g = helper.make_graph(nodes, "m", [],
                          [helper.make_tensor_value_info(k + "_out", TensorProto.FLOAT, None)
                           for k in weights],
                          [numpy_helper.from_array(v, k) for k, v in weights.items()])
    onnx.save(helper.make_model(g), str(path))
    return path


def files(tmp_path, kind):
    rng = np.random.default_rng(11)
    t = (rng.standard_normal(BIG) / 8).astype(np.float32)
    smalls = {f"v{i}": (rng.standard_normal(768) / 4).astype(np.float32) for i in range(8)}
    weights = {"teacher.big": t, **smalls}
    if kind == "onnx":
        teacher = onnx_file(tmp_path / "teacher.onnx", weights)
    else:
        teacher = tmp_path / "teacher.safetensors"
        em.safetensors_file(teacher, weights)

    filler = (rng.standard_normal(1_500_000) / 8).astype(np.float32)
    flat = t.ravel()
    # 2 MB of the teacher's bytes from an odd element offset, amid other data
    piece = np.concatenate([filler[:333_333], flat[1001:1001 + 500_000], filler[:700_001]])
    # the small teacher vectors at odd offsets spread over 6 MB of others
    # (every 2 MiB buffer of the read holds some)
    parts, at = [], 0
    for i, v in enumerate(smalls.values()):
        cut = 77 + i * 190_001
        parts += [filler[at:cut], v]
        at = cut
    inner = np.concatenate(parts + [filler[at:]])
    student = onnx_file(tmp_path / "student.onnx", {
        "copy": t,
        "half": t.astype(np.float16),
        "scaled": t * np.float32(-0.125),
        "half_scaled": t.astype(np.float16).astype(np.float32) * np.float32(2.0 ** -5),
        "piece": piece,
        "smalls": inner,
        "unrelated": filler,
    })
    return t, smalls, teacher, student


@pytest.mark.parametrize("kind", ["onnx", "safetensors"])
def test_large_tensors_found_in_every_form(nexus, tmp_path, kind):
    t, smalls, teacher, student = files(tmp_path, kind)
    r = run(nexus, "inspect", student, "--json", "--teacher", teacher)
    assert r.returncode == 1, r.stderr
    found = {}
    for m in json.loads(r.stdout)["shared_tensors"]:
        found.setdefault(m["tensor"], []).append(m)
    assert set(found) == {"copy", "half", "scaled", "half_scaled", "piece", "smalls"}, found
    # whole copies: every byte of every form was hashed, on either thread
    whole = {k: found[k][0] for k in ("copy", "half", "half_scaled")}
    assert all(not m["partial"] and m["bytes"] == t.nbytes // (1 if k == "copy" else 2)
               for k, m in whole.items()), whole
    assert whole["half"]["teacher_tensor"] == "teacher.big as float16"
    assert whole["half_scaled"]["teacher_tensor"] == \
        "teacher.big as float16, any sign or power-of-two scale"
    assert found["scaled"][0]["values"]
    # the piece's chunks but the two it is cut in at its ends
    assert found["piece"][0]["partial"] and found["piece"][0]["bytes"] >= 2_000_000 - (64 << 10)
    assert {m["teacher_tensor"] for m in found["smalls"]} == set(smalls)


def _pooled(rep):
    return sum(m["bytes"] for m in rep["shared_tensors"] if m.get("sum_part") == "pooled")


def _unpooled(rep):
    """the report less the pool's byte counts: the pool looks up windows in
    anchor groups drawn per process (fingerprint_pool.c), and a chain
    whose anchor falls past a read buffer's start loses the windows before
    the buffer's history (a few dozen elements), so its count may differ
    from run to run by that much; everything else is the same"""
    out = json.loads(json.dumps(rep))
    for m in out["shared_tensors"]:
        if m.get("sum_part") == "pooled":
            m.pop("bytes")
        m.pop("sum_total", None)
    return out


@pytest.mark.parametrize("call", ["pthread_create", "pthread_mutex_init", "pthread_cond_init"])
def test_no_second_thread_same_result_or_error(nexus, tmp_path, call):
    import pthread_shim
    (tmp_path / "shim").mkdir()
    shim = pthread_shim.build(tmp_path / "shim")
    _, _, teacher, student = files(tmp_path, "onnx")
    args = (nexus, "inspect", student, "--json", "--teacher", teacher)
    want = json.loads(run(*args).stdout)
    for nth in (1, 2):
        r = run(*args, env=pthread_shim.env(shim, call, nth, os.environ))
        assert "SHIM: failed" in r.stderr, r.stderr
        if call == "pthread_create":   # worked around: both ways on one thread
            assert r.returncode == 1, r.stderr
            got = json.loads(r.stdout)
            assert _pooled(got) == pytest.approx(_pooled(want), rel=0.1), r.stderr
            assert _unpooled(got) == _unpooled(want), r.stderr
        else:
            assert r.returncode == 3 and "cannot make a" in r.stderr, r.stderr


# realloc that fails on any thread but the main one, from the Nth call
THREAD_REALLOC = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>
static int n;
void *realloc(void *p, size_t s)
{
	static void *(*real)(void *, size_t);
	if (!real)
		real = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
	if (syscall(SYS_gettid) != getpid() && ++n >= atoi(getenv("SHIM_RE"))) {
		fprintf(stderr, "SHIM: realloc fails on a thread\n");
		return NULL;
	}
	return real(p, s);
}
"""


def test_an_error_on_the_second_thread_is_said(nexus, tmp_path):
    """The second thread's failure (here out of memory growing its chunk
    list) stops the read and its message is the error: it was lost, and
    inspect printed an empty error and exited 0 (review B)."""
    import subprocess
    src, so = tmp_path / "re.c", tmp_path / "re.so"
    src.write_text(THREAD_REALLOC)
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", so, src, "-ldl"], check=True)
    _, _, teacher, student = files(tmp_path, "onnx")
    r = run(nexus, "inspect", student, "--json", "--teacher", teacher,
            env={**os.environ, "LD_PRELOAD": str(so), "SHIM_RE": "1"})
    assert "SHIM: realloc fails" in r.stderr, r.stderr
    assert r.returncode == 3, (r.returncode, r.stderr, r.stdout)
    err = json.loads(r.stdout)["error"] if r.stdout.strip() else {"message": r.stderr}
    assert err["message"].strip(), r.stdout + r.stderr
