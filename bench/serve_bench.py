#!/usr/bin/python3
"""`nexus_cli serve` throughput and latency at 1, 8 and 64 concurrent
clients (each: POST /predict, one text, back to back), batching across
requests (--max-batch 32 --max-wait-ms 2) versus the named baseline: the
same server with --max-batch 1 (one Run per request, no cross-request
batching).  Prints requests/s, p50 and p99 per setting, medians of
--runs, and the ratios; peak RSS of each server from /proc.

    NEXUS_BUILD=build bench/serve_bench.py [--runs 3] [--seconds 3]

The model is the e2e suite's toy classifier (tests/e2e/test_runtime.py):
this measures the server, not ONNX Runtime.

    NEXUS_BUILD=build bench/serve_bench.py --bundle DIR [--runs 3] [--seconds 10]

is issue #17's comparison on a real-sized bundle (bench/run.py builds
build/bench/real_distilbert_b8 and real_minilm_b8): `nexus_cli serve
--max-batch B` versus bench/ort_node_server.js, a Node `http` server around
onnxruntime-node 1.30 with the same batching (one Run at a time, up to B
queued requests, sorted and padded to the longest), B the bundle's
batch_size, one intra-op thread each (the bundle's runtime.yaml), texts of
mixed length (bench/run.py's mixed_texts).  Needs node and the npm packages
of bench/run.py (NEXUS_BENCH_NPM).  --cli runs another nexus_cli on the
bundle (by default its own bin/nexus_cli); --baseline-cli PATH compares
against that nexus_cli instead of Node (e.g. the previous commit's).  The
default --cli is NEXUS_BUILD's libexec/nexus/bin/nexus_cli (bench/run.py
keeps its real-sized bundles across commits, so their own is older).
--node-sorted makes the Node server sort its queue by length as ours does.

Each line also gives the load client's CPU seconds per request (the
client must not be the bottleneck), the server's own CPU milliseconds per
request (user + system, from /proc: steadier than requests/s on a loaded
machine) and the load average.
"""
import argparse
import http.client
import json
import os
import pathlib
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from test_runtime import make_bundle  # noqa: E402

WORDS = "free money click now lunch at noon tomorrow hello world".split()
TEXTS = [" ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(1 + i % 24)) for i in range(256)]


NPM = pathlib.Path(os.environ.get("NEXUS_BENCH_NPM",
                                  pathlib.Path.home() / ".cache/nexus/bench/npm"))


def start(cli, tmp, *args):
    ready = tmp / f"port-{time.monotonic_ns()}"
    if cli == "node":   # args: bundle, max batch, threads[, "sorted"]
        p = subprocess.Popen(["node", str(ROOT / "bench/ort_node_server.js"), str(args[0]),
                              str(ready), *map(str, args[1:])],
                             env=dict(os.environ, NODE_PATH=str(NPM / "node_modules")),
                             stderr=subprocess.DEVNULL)
    else:
        p = subprocess.Popen([str(cli), "serve", "--port", "0", "--ready-file", str(ready),
                              *args], stderr=subprocess.DEVNULL)
    while not ready.exists():
        assert p.poll() is None
        time.sleep(0.02)
    port = int(ready.read_text())
    while True:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return p, port
        except OSError:
            pass
        time.sleep(0.05)


def load(port, clients, seconds):
    lat, stop = [], time.monotonic() + seconds
    lock = threading.Lock()
    cpu0 = time.process_time()

    def client(k):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        i, mine = k, []
        while time.monotonic() < stop:
            t0 = time.monotonic()
            c.request("POST", "/predict", json.dumps({"text": TEXTS[i % len(TEXTS)]}))
            r = c.getresponse()
            r.read()
            assert r.status == 200, r.status
            mine.append(time.monotonic() - t0)
            i += clients
        with lock:
            lat.extend(mine)
    t0 = time.monotonic()
    ts = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    lat.sort()
    wall = time.monotonic() - t0
    return (len(lat) / wall, lat[len(lat) // 2] * 1e3,
            lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3,
            (time.process_time() - cpu0) / max(1, len(lat)) * 1e3, len(lat))


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def cpu_s(pid):
    """user + system CPU seconds of pid so far (/proc/PID/stat, fields 14-15)"""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--clients", default="1,8,64", help="comma-separated concurrencies")
    ap.add_argument("--bundle", help="a real-sized bundle: nexus_cli serve vs a Node server")
    ap.add_argument("--cli", help="the nexus_cli to serve --bundle with (default its own)")
    ap.add_argument("--baseline-cli", help="compare with this nexus_cli instead of Node")
    ap.add_argument("--node-sorted", action="store_true",
                    help="the Node server sorts its whole queue by length, as ours does")
    a = ap.parse_args()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="serve-bench-"))
    global TEXTS
    if a.bundle:
        bundle = pathlib.Path(a.bundle).resolve()
        from conftest import BUILD
        cli = pathlib.Path(a.cli).resolve() if a.cli else BUILD / "libexec/nexus/bin/nexus_cli"
        yaml = (bundle / "config/runtime.yaml").read_text()
        batch = re.search(r"^batch_size:\s*(\d+)", yaml, re.M).group(1)
        threads = re.search(r"^threads:\s*(\d+)", yaml, re.M).group(1)
        sys.path.insert(0, str(ROOT / "bench"))
        from run import mixed_texts
        TEXTS = mixed_texts()
        ours = ["--bundle", str(bundle), "--max-batch", batch, "--max-wait-ms", "2"]
        if a.baseline_cli:
            base = "baseline nexus_cli serve"
            setups = {"nexus_cli serve": (cli, ours), base: (a.baseline_cli, ours)}
        else:
            base = "onnxruntime-node server" + (" (sorted)" if a.node_sorted else "")
            setups = {"nexus_cli serve": (cli, ours),
                      base: ("node", [bundle, batch, threads] +
                             (["sorted"] if a.node_sorted else []))}
    else:
        cli = make_bundle(tmp / "b", batch_size=8, max_len=32)
        base = "baseline (--max-batch 1)"
        setups = {"batched": (cli, ["--max-batch", "32", "--max-wait-ms", "2"]),
                  base: (cli, ["--max-batch", "1", "--max-wait-ms", "0"])}
    print(f"{'clients':>7} {'setting':<26} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}", flush=True)
    for clients in map(int, a.clients.split(",")):
        med, runs = {}, {name: [] for name in setups}
        for i in range(a.runs):     # alternated, so that a change of load hits both
            for name, (prog, args) in (list(setups.items())[::1 if i % 2 == 0 else -1]):
                p, port = start(prog, tmp, *args)
                cpu0 = cpu_s(p.pid)
                r = load(port, clients, a.seconds)
                cpu = (cpu_s(p.pid) - cpu0) / max(1, r[4]) * 1e3
                runs[name].append(r[:4] + (rss_kib(p.pid), cpu))
                p.send_signal(signal.SIGTERM)
                assert p.wait(120) == 0
        for name, rs in runs.items():
            med[name] = [statistics.median(r[k] for r in rs) for k in (0, 1, 2, 4, 3, 5)]
            print(f"{clients:>7} {name:<26} {med[name][0]:>8.2f} {med[name][1]:>8.2f} "
                  f"{med[name][2]:>8.2f}   peak RSS {med[name][3] / 1024:.0f} MiB   "
                  f"server {med[name][5]:.3f} ms CPU/req   "
                  f"client {med[name][4]:.2f} ms CPU/req   load {os.getloadavg()[0]:.1f}   "
                  f"runs req/s {[round(r[0], 2) for r in rs]}", flush=True)
        names = list(setups)
        b, o = med[base], med[names[0]]
        print(f"{clients:>7} {'ratio ours/baseline':<26} {o[0] / b[0]:>8.2f}x "
              f"{o[1] / b[1]:>7.2f}x {o[2] / b[2]:>7.2f}x   RSS {o[3] / b[3]:.2f}x   "
              f"server CPU/req {o[5] / b[5]:.2f}x")


if __name__ == "__main__":
    main()
