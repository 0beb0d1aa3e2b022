#!/usr/bin/python3
"""`nexus_cli serve` throughput and latency at 1, 8 and 64 concurrent
clients (each: POST /predict, one text, back to back), batching across
requests (--max-batch 32 --max-wait-ms 2) versus the named baseline: the
same server with --max-batch 1 (one Run per request, no cross-request
batching).  Prints requests/s, p50 and p99 per setting, medians of
--runs, and the ratios; peak RSS of each server from /proc.

    NEXUS_BUILD=build bench/serve_bench.py [--runs 3] [--seconds 3]

The model is the e2e suite's toy classifier (tests/e2e/test_runtime.py):
this measures the server, not ONNX Runtime; issue #17's comparison with a
Node server around onnxruntime-node on real-sized students is not here.
"""
import argparse
import http.client
import json
import pathlib
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


def start(cli, tmp, *args):
    ready = tmp / f"port-{time.monotonic_ns()}"
    p = subprocess.Popen([str(cli), "serve", "--port", "0", "--ready-file", str(ready), *args],
                         stderr=subprocess.DEVNULL)
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

    def client(k):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
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
    return (len(lat) / (time.monotonic() - t0), lat[len(lat) // 2] * 1e3,
            lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3)


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3)
    a = ap.parse_args()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="serve-bench-"))
    cli = make_bundle(tmp / "b", batch_size=8, max_len=32)
    setups = {"batched": ["--max-batch", "32", "--max-wait-ms", "2"],
              "baseline (--max-batch 1)": ["--max-batch", "1", "--max-wait-ms", "0"]}
    print(f"{'clients':>7} {'setting':<26} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for clients in (1, 8, 64):
        med = {}
        for name, args in setups.items():
            runs = []
            for _ in range(a.runs):
                p, port = start(cli, tmp, *args)
                runs.append(load(port, clients, a.seconds) + (rss_kib(p.pid),))
                p.send_signal(signal.SIGTERM)
                assert p.wait(30) == 0
            med[name] = [statistics.median(r[k] for r in runs) for k in range(4)]
            print(f"{clients:>7} {name:<26} {med[name][0]:>8.0f} {med[name][1]:>8.2f} "
                  f"{med[name][2]:>8.2f}   peak RSS {med[name][3] / 1024:.0f} MiB")
        b, o = med["baseline (--max-batch 1)"], med["batched"]
        print(f"{clients:>7} {'ratio batched/baseline':<26} {o[0] / b[0]:>8.2f}x "
              f"{o[1] / b[1]:>7.2f}x {o[2] / b[2]:>7.2f}x")


if __name__ == "__main__":
    main()
