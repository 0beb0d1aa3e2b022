#!/usr/bin/python3
"""Memory of `nexus_cli serve` on the e2e suite's toy classifier with
max_sequence_length 512 and batch_size 8: VmSize and VmRSS once ready,
then VmRSS and VmHWM after a load of single-text requests from 16 clients
and requests of 128 texts of 512 tokens each, for two nexus_cli
binaries run alternately (ours: NEXUS_BUILD's; the baseline: --baseline-cli,
e.g. the previous commit's).  Prints the medians of --runs and the ratios.

    NEXUS_BUILD=build bench/serve_rss.py --baseline-cli OLD/nexus_cli [--runs 3]
"""
import argparse
import json
import pathlib
import signal
import statistics
import sys
import tempfile
import threading

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from serve_bench import TEXTS, start  # noqa: E402
from test_runtime import make_bundle  # noqa: E402

LONG = " ".join(TEXTS[-1] for _ in range(22))  # past 512 tokens: truncated to 512


def status(pid):
    out = {}
    for line in open(f"/proc/{pid}/status"):
        k, _, v = line.partition(":")
        if k in ("VmSize", "VmRSS", "VmHWM"):
            out[k] = int(v.split()[0])
    return out


def post(port, doc):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    c.request("POST", "/predict", json.dumps(doc))
    r = c.getresponse()
    r.read()
    assert r.status == 200, r.status


def one(cli, bundle, tmp):
    p, port = start(cli, tmp, "--bundle", str(bundle))
    ready = status(p.pid)

    def client(k):
        for i in range(20):
            post(port, {"text": TEXTS[(k * 20 + i) % len(TEXTS)]})
    ts = [threading.Thread(target=client, args=(k,)) for k in range(16)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for _ in range(3):
        post(port, {"texts": [LONG] * 128})
    after = status(p.pid)
    p.send_signal(signal.SIGTERM)
    assert p.wait(60) == 0
    return (ready["VmSize"], ready["VmRSS"], after["VmRSS"], after["VmHWM"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline-cli", required=True)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    from conftest import BUILD
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="serve-rss-"))
    bundle = tmp / "b"
    make_bundle(bundle, batch_size=8, max_len=512)
    clis = {"ours": BUILD / "libexec/nexus/bin/nexus_cli", "baseline": pathlib.Path(a.baseline_cli)}
    runs = {k: [] for k in clis}
    for i in range(a.runs):     # alternated
        for name in (list(clis) if i % 2 == 0 else list(clis)[::-1]):
            runs[name].append(one(clis[name], bundle, tmp))
    cols = ("VmSize ready", "VmRSS ready", "VmRSS after", "VmHWM after")
    print(f"{'':<10}" + "".join(f"{c:>14}" for c in cols) + "   (KiB, medians)")
    med = {k: [statistics.median(r[j] for r in v) for j in range(4)] for k, v in runs.items()}
    for k, m in med.items():
        print(f"{k:<10}" + "".join(f"{x:>14.0f}" for x in m))
    print(f"{'ours-base':<10}" + "".join(f"{o - b:>14.0f}" for o, b in
                                         zip(med["ours"], med["baseline"])))
    print(f"{'ratio':<10}" + "".join(f"{o / b:>13.3f}x" for o, b in
                                         zip(med["ours"], med["baseline"])))


if __name__ == "__main__":
    main()
