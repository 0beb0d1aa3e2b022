"""Run `nexus verify` on a hand-made bundle (bundle_fixture.py) and read its
report; weights and archives in several formats. (from
test_verify_adversarial.py, by scripts/dev/regroup_tests.py).
"""
import base64
import io
import json
import os
import pickle
import struct
import tarfile
import zipfile

import numpy as np

from conftest import run


def verify(nexus, b, *args, timeout=60, sandbox=False, teacher=True):
    """The fixture bundle has no runnable model: TRV-5 is tested on real
    bundles (test_sandbox.py, test_build.py); here it is off unless asked.
    Like a deployment gate, it passes the teacher (an unrelated model), so
    the student is fingerprinted (no no-teacher-fingerprint warning)."""
    env = dict(os.environ, NEXUS_RUNTIME_DIR=str(b.runtime_dir))
    if not sandbox and "--no-sandbox" not in args:
        args = ("--no-sandbox",) + args
    if teacher and "--teacher" not in args:
        args = ("--teacher", b.teacher) + args
    r = run(nexus, "verify", "--json", *args, b.root, env=env, timeout=timeout)
    assert r.returncode in (0, 1), r.stderr
    rep = json.loads(r.stdout)
    assert rep["schema"] == "nexus.verify.v1"
    return r.returncode, rep


def codes(rep, severity=None):
    return {f["code"] for f in rep["findings"] if severity in (None, f["severity"])}


def expect_fail(nexus, b, code, *args, timeout=60):
    rc, rep = verify(nexus, b, *args, timeout=timeout)
    assert rc == 1 and rep["verdict"] == "FAIL", rep
    assert code in codes(rep, "FAIL"), json.dumps(rep["findings"], indent=1)
    return rep


def check_status(rep, check):
    return next(c["status"] for c in rep["checks"] if c["id"] == check)


def manifest_obj(b):
    return json.loads(b.path("manifest.json").read_text())


def torch_zip():
    import torch
    buf = io.BytesIO()
    torch.save({"layer.weight": torch.randn(16, 16)}, buf)
    return buf.getvalue()


def npy():
    buf = io.BytesIO()
    np.save(buf, np.arange(64, dtype=np.float32))
    return buf.getvalue()


def safetensors():
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    return struct.pack("<Q", len(header)) + header + np.ones(4, np.float32).tobytes()


def zipped():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("weights.txt", "1 2 3")
    return buf.getvalue()


def tarred():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        data = b"1 2 3"
        info = tarfile.TarInfo("weights.txt")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


WEIGHTS = {
    "pytorch-zip": torch_zip,
    "safetensors": safetensors,
    "numpy": npy,
    "hdf5": lambda: b"\x89HDF\r\n\x1a\n" + bytes(512),
    "gguf": lambda: b"GGUF\x03\x00\x00\x00" + bytes(64),
}


for _p in range(6):
    WEIGHTS[f"pickle-{_p}"] = (lambda p: lambda: pickle.dumps(
        {"layer.weight": [0.5] * 16, "step": 3}, protocol=p))(_p)


def blob():
    return base64.b64encode(np.random.default_rng(2).bytes(8192)).decode()


def with_model(b, model):
    b.model = model
    b.smuggle("model/student_model.onnx", model.SerializeToString())


def sign(nexus, b, tmp_path, name="release"):
    prefix = tmp_path / name
    if not (tmp_path / f"{name}.key").exists():
        r = run(nexus, "keygen", "-o", prefix)
        assert r.returncode == 0, r.stderr
    r = run(nexus, "sign", b.root, "--key", tmp_path / f"{name}.key")
    assert r.returncode == 0, r.stderr
    return tmp_path / f"{name}.pub"


for _p in range(6):
    WEIGHTS[f"pickle-{_p}"] = (lambda p: lambda: pickle.dumps(
        {"layer.weight": [0.5] * 16, "step": 3}, protocol=p))(_p)
