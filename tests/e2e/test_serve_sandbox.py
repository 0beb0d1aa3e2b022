"""`nexus serve BUNDLE` (issue #17): the bundle's nexus_cli serve runs in the
sandbox of `nexus run`, on a listening socket bound outside and passed in;
its answers equal `nexus_cli run`'s; the server process is confined (bwrap:
a network namespace of its own; landlock: seccomp); SIGTERM drains and
exits 0; a unix socket works the same way.  Loopback only; every server is
started here and stopped by pid."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from test_runtime import jsonl, make_bundle, run_texts  # noqa: E402
from test_serve import MANY, same, unix_request  # noqa: E402

import http.client  # noqa: E402

TEXTS = MANY[:8]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("sbx") / "b"
    cli = make_bundle(root, batch_size=8)
    r = run_texts(cli, TEXTS)
    assert r.returncode == 0, r.stderr
    return root, dict(zip(TEXTS, jsonl(r.stdout)))


def start(nexus, root, tmp_path, *args, env=None):
    ready = tmp_path / f"ready-{time.monotonic_ns()}"
    proc = subprocess.Popen([nexus, "serve", str(root), "--ready-file", str(ready), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "nexus serve did not listen in 60 s"
        time.sleep(0.02)
    return proc, ready.read_text().strip()


def post(port, path, doc):
    c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=30)
    try:
        c.request("POST" if doc is not None else "GET", path,
                  body=json.dumps(doc) if doc is not None else None)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def wait_ready(proc, get):
    deadline = time.monotonic() + 90
    while True:
        assert proc.poll() is None, proc.stderr.read()
        try:
            if get() == 200:
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, "the sandboxed server was not ready in 90 s"
        time.sleep(0.1)


def stop(proc, sig):
    """sig to nexus serve (which it forwards as a stop request); its status."""
    proc.send_signal(sig)
    try:
        return proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def descendants(pid):
    kids = {}
    for d in pathlib.Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            kids.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for k in kids.get(p, []):
            out.append(k)
            todo.append(k)
    return out


def server_pid(pid):
    for p in descendants(pid):
        try:
            if pathlib.Path(f"/proc/{p}/exe").resolve().name == "nexus_cli":
                return p
        except OSError:
            continue
    return None


def test_nexus_serve_runs_in_the_sandbox(nexus, bundle, tmp_path, sandbox_backend):
    root, want = bundle
    proc, port = start(nexus, root, tmp_path, "--port", "0", "--max-batch", "4")
    try:
        wait_ready(proc, lambda: post(port, "/health", None)[0])
        for t in TEXTS:
            status, body = post(port, "/predict", {"text": t})
            assert status == 200 and same(json.loads(body), want[t]), body
        pid = server_pid(proc.pid)
        assert pid, "no nexus_cli below nexus serve"
        status = pathlib.Path(f"/proc/{pid}/status").read_text()
        if sandbox_backend == "bwrap":
            assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
        else:
            assert "\nSeccomp:\t2\n" in status
        assert "\nNoNewPrivs:\t1\n" in status
    finally:
        rc = stop(proc, signal.SIGTERM)
    err = proc.stderr.read()
    assert rc == 0, err
    assert "draining" in err


def test_nexus_serve_on_a_unix_socket(nexus, bundle, tmp_path):
    root, want = bundle
    sock = tmp_path / "s.sock"
    proc, where = start(nexus, root, tmp_path, "--unix", sock)
    try:
        assert where == str(sock)
        wait_ready(proc, lambda: unix_request(sock, "GET", "/health")[0])
        status, body = unix_request(sock, "POST", "/predict",
                                    json.dumps({"text": TEXTS[0]}).encode())
        assert status == 200 and same(json.loads(body), want[TEXTS[0]])
    finally:
        rc = stop(proc, signal.SIGINT)
    assert rc == 0, proc.stderr.read()
    assert not sock.exists()


def test_nexus_serve_usage(nexus, bundle, tmp_path):
    root, _ = bundle
    r = subprocess.run([nexus, "serve", str(root), "--unix", str(tmp_path / "s"), "--port", "1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "not both" in r.stderr
    r = subprocess.run([nexus, "serve"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "BUNDLE" in r.stderr
