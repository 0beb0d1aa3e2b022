"""`nexus_cli serve` (issue #17 item 5): concurrent clients get the answers
`nexus_cli run` gives, batched across requests; a full queue answers 503
and loses or swaps nothing; bad JSON, huge bodies and slow clients get
errors and block no one; /metrics parses as Prometheus text; SIGTERM
drains.  Every server listens on 127.0.0.1, started here, stopped by pid."""
import http.client
import json
import math
import pathlib
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from test_runtime import TEXTS, jsonl, make_bundle, run, run_texts, token_ids  # noqa: E402
from test_runtime_outputs import with_model  # noqa: E402

pytest.importorskip("onnx")

WORDS = ["free", "money", "click", "now", "lunch", "at", "noon", "tomorrow", "hello", "world"]
# 96 different texts of 1 to 12 words, so that batches mix lengths
MANY = [" ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(1 + i % 12)) for i in range(96)]


class Server:
    def __init__(self, cli, tmp, *args, wait_ready=True):
        self.ready_file = tmp / f"port-{time.monotonic_ns()}"
        self.proc = subprocess.Popen([str(cli), "serve", "--port", "0", "--ready-file",
                                      str(self.ready_file), *map(str, args)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not self.ready_file.exists():
            assert self.proc.poll() is None, self.proc.stderr.read()
            assert time.monotonic() < deadline, "serve did not listen in 60 s"
            time.sleep(0.02)
        self.port = int(self.ready_file.read_text())
        while wait_ready and self.get("/health")[0] != 200:
            assert self.proc.poll() is None, self.proc.stderr.read()
            assert time.monotonic() < deadline, "serve was not ready in 60 s"
            time.sleep(0.05)

    def conn(self, timeout=30):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None):
        c = self.conn()
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            c.close()

    def get(self, path):
        return self.request("GET", path)

    def post(self, path, doc):
        s, h, b = self.request("POST", path, doc, {"Content-Type": "application/json"})
        return s, h, json.loads(b)

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def server_factory(tmp_path):
    servers = []

    def start(cli, *args, **kw):
        s = Server(cli, tmp_path, *args, **kw)
        servers.append(s)
        return s
    yield start
    for s in servers:
        s.stop(signal.SIGKILL if s.proc.poll() is None else signal.SIGTERM)


@pytest.fixture(scope="module")
def clf(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve") / "b"
    cli = make_bundle(root, batch_size=8)
    r = run_texts(cli, MANY)
    assert r.returncode == 0, r.stderr
    return cli, dict(zip(MANY, jsonl(r.stdout)))


def same(got, want, tol=1e-5):
    """Equal JSON, numbers within tol (batches of other sizes pad differently)."""
    if isinstance(want, float) or isinstance(got, float):
        return math.isclose(got, want, rel_tol=0, abs_tol=tol)
    if isinstance(want, dict):
        return isinstance(got, dict) and got.keys() == want.keys() and \
            all(same(got[k], want[k], tol) for k in want)
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and \
            all(same(g, w, tol) for g, w in zip(got, want))
    return got == want


def concurrently(n, fn):
    """fn(i) on n threads released together; returns the n results."""
    out = [None] * n
    gate = threading.Barrier(n)

    def one(i):
        gate.wait()
        try:
            out[i] = fn(i)
        except Exception as e:  # noqa: BLE001 - reported by the caller's assert
            out[i] = e
    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    return out


def parse_prometheus(text):
    """A small parser of the text exposition format 0.0.4: {(name, labels):
    value} plus {family: type}; raises on any line it does not understand."""
    samples, types = {}, {}
    sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
    label = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            types[name] = kind
            continue
        if line.startswith("#"):
            continue
        m = sample.match(line)
        assert m, f"not a sample line: {line!r}"
        labels, rest = {}, m.group(3) or ""
        while rest:
            lm = label.match(rest)
            assert lm, f"bad labels in {line!r}"
            labels[lm.group(1)] = lm.group(2)
            rest = rest[lm.end():]
        value = float(m.group(4))  # also "+Inf", "NaN"
        key = (m.group(1), tuple(sorted(labels.items())))
        assert key not in samples, f"duplicate sample {line!r}"
        samples[key] = value
    for name, kind in types.items():  # every histogram's buckets add up
        if kind != "histogram":
            continue
        series = {}
        for (n, labels), v in samples.items():
            if n == name + "_bucket":
                rest = tuple(kv for kv in labels if kv[0] != "le")
                series.setdefault(rest, []).append((float(dict(labels)["le"]), v))
        assert series, f"histogram {name} has no buckets"
        for rest, buckets in series.items():
            buckets.sort()
            counts = [v for _, v in buckets]
            assert counts == sorted(counts), f"{name}{rest}: buckets not cumulative"
            assert buckets[-1][0] == math.inf
            assert samples[(name + "_count", rest)] == counts[-1]
            assert (name + "_sum", rest) in samples
    return samples, types


def test_concurrent_clients_match_run_and_are_batched(clf, server_factory):
    cli, want = clf
    srv = server_factory(cli, "--max-wait-ms", "50", "--max-batch", "32")
    got = concurrently(len(MANY), lambda i: srv.post("/predict", {"text": MANY[i]}))
    for i, g in enumerate(got):
        assert not isinstance(g, Exception), g
        status, _, body = g
        assert status == 200, body
        assert same(body, want[MANY[i]]), (MANY[i], body, want[MANY[i]])
    # an array in, the results in its order
    status, _, body = srv.post("/predict", {"texts": MANY[:10][::-1]})
    assert status == 200
    assert all(same(g, want[t]) for g, t in zip(body["results"], MANY[:10][::-1]))
    ok = (("endpoint", "/predict"), ("status", "200"))
    # a request is counted once its connection completes, just after the
    # client has read the answer: wait for the last one
    deadline = time.monotonic() + 10
    while True:
        samples, types = parse_prometheus(srv.get("/metrics")[2].decode())
        if samples[("nexus_requests_total", ok)] == len(MANY) + 1 or \
                time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert types["nexus_batch_size"] == "histogram"
    batches = samples[("nexus_batch_size_count", ())]
    texts = samples[("nexus_batch_size_sum", ())]
    assert texts == len(MANY) + 10 + 1 - 1  # the warm-up does not count
    assert batches < len(MANY), "96 concurrent requests ran one by one: no batching"
    assert samples[("nexus_requests_total", ok)] == len(MANY) + 1
    assert samples[("nexus_request_duration_seconds_count", (("endpoint", "/predict"),))] \
        == len(MANY) + 1
    assert ("nexus_queue_depth", ()) in samples
    assert srv.stop() == 0


def test_lone_client_does_not_wait_for_a_batch(clf, server_factory):
    cli, want = clf
    srv = server_factory(cli, "--max-wait-ms", "2000")
    t0 = time.monotonic()
    for t in MANY[:5]:
        status, _, body = srv.post("/predict", {"text": t})
        assert status == 200 and same(body, want[t])
    assert time.monotonic() - t0 < 2, "each request waited --max-wait-ms alone"


def test_one_plan_one_run_per_batch(clf, server_factory):
    """serve cuts a round into batches once, over texts, and each batch is
    one Run: a request of a 3-token and a 32-token text (max_sequence_length
    32) runs as two batches (16 + 3 + 16 + 32 padded-token units against
    16 + 2 x 32), and nexus_batch_size counts those two Runs."""
    cli, want = clf
    long_text = " ".join(WORDS * 4)
    texts = ["hello", long_text]
    ran = dict(zip(texts, jsonl(run_texts(cli, texts).stdout)))
    srv = server_factory(cli, "--max-batch", "8")
    status, _, body = srv.post("/predict", {"texts": [long_text, "hello"]})
    assert status == 200, body
    assert same(body["results"][0], ran[long_text]) and same(body["results"][1], ran["hello"])
    samples, _ = parse_prometheus(srv.get("/metrics")[2].decode())
    assert samples[("nexus_batch_size_count", ())] == 2, samples
    assert samples[("nexus_batch_size_sum", ())] == 2
    assert srv.stop() == 0


def test_embeddings_openai_shape(tmp_path, server_factory):
    cli = make_bundle(tmp_path / "e", task="embedding", selftest=False,
                      extra_yaml="pooling: mean\nnormalize: true\noutput: hidden\n")
    texts = TEXTS[:3] + ["x"]
    want = jsonl(run_texts(cli, texts).stdout)
    ntok = sum(len(i) for i in token_ids(cli, texts))
    srv = server_factory(cli)
    status, _, body = srv.post("/v1/embeddings", {"input": texts, "model": "whatever"})
    assert status == 200, body
    assert body["object"] == "list" and body["model"]
    assert body["usage"] == {"prompt_tokens": ntok, "total_tokens": ntok}
    assert [d["index"] for d in body["data"]] == list(range(len(texts)))
    for d, w in zip(body["data"], want):
        assert d["object"] == "embedding"
        assert same(d["embedding"], w["embedding"])
    status, _, one = srv.post("/v1/embeddings", {"input": texts[0]})
    assert status == 200 and same(one["data"][0]["embedding"], want[0]["embedding"])
    status, _, err = srv.post("/v1/embeddings", {"input": "x", "encoding_format": "base64"})
    assert status == 400 and "encoding_format" in err["error"]["message"]


def test_overload_503_loses_and_swaps_nothing(clf, server_factory):
    cli, want = clf
    # the thread waits 300 ms for a batch while 64 clients arrive; 4 fit
    srv = server_factory(cli, "--queue", "4", "--max-batch", "64", "--max-wait-ms", "300")
    got = concurrently(64, lambda i: srv.post("/predict", {"text": MANY[i]}))
    codes = []
    for i, g in enumerate(got):
        assert not isinstance(g, Exception), g
        status, headers, body = g
        codes.append(status)
        if status == 503:
            assert headers.get("Retry-After") == "1"
            assert body["error"]["type"] == "server_overloaded"
        else:
            assert status == 200 and same(body, want[MANY[i]]), (i, body)
    assert 503 in codes and 200 in codes, codes
    samples, _ = parse_prometheus(srv.get("/metrics")[2].decode())
    assert samples[("nexus_requests_total", (("endpoint", "/predict"), ("status", "503")))] \
        == codes.count(503)


def test_bad_requests_get_json_errors(clf, server_factory):
    cli, _ = clf
    srv = server_factory(cli, "--queue", "100")
    for body, why in [("{not json", "malformed JSON"), ("[1]", "JSON object"),
                      ({"text": 3}, "string"), ({"texts": []}, "string"), ({}, "needs")]:
        status, _, err = srv.post("/predict", body)
        assert status == 400 and why in err["error"]["message"], (body, err)
        assert err["error"]["code"] == 400
    status, _, err = srv.post("/v1/embeddings", {"input": "x"})
    assert status == 400 and "/predict" in err["error"]["message"]
    status, _, err = srv.post("/rerank", {"query": "q", "documents": ["d"]})
    assert status == 400 and "not rerank" in err["error"]["message"]
    status, _, err = srv.post("/predict", {"texts": ["a"] * 101})
    assert status == 413 and "at most 100)" in err["error"]["message"]  # --queue 100
    status, _, b = srv.request("GET", "/nope")
    assert status == 404 and json.loads(b)["error"]["type"] == "not_found"
    status, _, b = srv.request("GET", "/predict")
    assert status == 405 and json.loads(b)["error"]
    # one line of input the tokenizer takes but the model's head is fine with
    status, _, ok = srv.post("/predict", {"text": "hello"})
    assert status == 200 and "label" in ok


def read_response(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, json.loads(body)


def test_huge_bodies_get_413(clf, server_factory):
    cli, _ = clf
    srv = server_factory(cli, "--max-body", "4096")
    # announced: answered before a byte of the body is read
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1000000000\r\n\r\n")
        status, err = read_response(s)
    assert status == 413 and "--max-body" in err["error"]["message"]
    # chunked, so only counting tells
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 1000
        for _ in range(8):
            s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        s.sendall(b"0\r\n\r\n")
        status, err = read_response(s)
    assert status == 413
    status, _, ok = srv.post("/predict", {"text": "still fine"})
    assert status == 200


def test_slowloris_does_not_block_others(clf, server_factory):
    cli, want = clf
    srv = server_factory(cli, "--timeout", "2")
    slow = []
    for _ in range(8):  # headers that never end, a body that never comes
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"te")
        slow.append(s)
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    s.sendall(b"GET /health HTTP/1.1\r\nHo")
    slow.append(s)
    t0 = time.monotonic()
    for t in MANY[:8]:
        status, _, body = srv.post("/predict", {"text": t})
        assert status == 200 and same(body, want[t])
    assert time.monotonic() - t0 < 2, "slow clients delayed the others"
    # the server drops them after --timeout
    for s in slow:
        s.settimeout(10)
        try:
            assert s.recv(1024) == b""
        except ConnectionResetError:
            pass
        s.close()


def test_sigterm_drains_in_flight(clf, server_factory):
    cli, want = clf
    srv = server_factory(cli)
    texts = MANY[:8]
    bodies = [json.dumps({"text": t}).encode() for t in texts]
    socks = []
    for b in bodies:  # begun: headers and half the body
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                  % (len(b), b[:len(b) // 2]))
        socks.append(s)
    deadline = time.monotonic() + 10
    while True:  # the 8 and this /metrics request
        samples, _ = parse_prometheus(srv.get("/metrics")[2].decode())
        if samples[("nexus_requests_in_flight", ())] == 9:
            break
        assert time.monotonic() < deadline
        time.sleep(0.01)
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert srv.proc.poll() is None, "exited with requests in flight"
    with pytest.raises(OSError):  # no longer accepting
        socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()
    for s, b in zip(socks, bodies):
        s.sendall(b[len(b) // 2:])
    for s, t in zip(socks, texts):
        status, body = read_response(s)
        s.close()
        assert status == 200 and same(body, want[t]), (t, body)
    assert srv.proc.wait(30) == 0


def test_modified_bundle_never_ready_and_usage(clf, tmp_path):
    cli, _ = clf
    r = subprocess.run([str(cli), "serve", "--port", "x"], capture_output=True, text=True)
    assert r.returncode == 2 and "--port" in r.stderr
    bad = tmp_path / "bad"
    make_bundle(bad)
    (bad / "config" / "selftest.json").write_text("{}")  # the manifest no longer matches
    ready = tmp_path / "port"
    r = subprocess.run([str(bad / "bin" / "nexus_cli"), "serve", "--port", "0", "--ready-file",
                        str(ready)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "selftest.json" in r.stderr
    assert "listening" in r.stderr and "ready" not in r.stderr.replace("already", "")
    assert not ready.exists()


def test_text_the_model_rejects_costs_only_itself(tmp_path, server_factory):
    from test_runtime_outputs import with_model
    cli, _ = with_model(tmp_path / "p", positions=8)  # max_sequence_length 32
    long_text = " ".join(WORDS * 2)
    texts = ["hello", long_text, "free money"]
    want = jsonl(run_texts(cli, texts).stdout)
    assert "error" in want[1] and "label" in want[0]
    srv = server_factory(cli)
    status, _, body = srv.post("/predict", {"texts": texts})
    assert status == 200
    assert same(body["results"][0], want[0]) and same(body["results"][2], want[2])
    assert body["results"][1]["code"] == "model-error"
    status, _, err = srv.post("/predict", {"text": long_text})
    assert status == 422 and err["error"]["reason"] == "model-error"


def test_text_that_does_not_tokenize_costs_only_itself(tmp_path, server_factory):
    """serve tokenizes each text once, before its sort; a text whose
    encoding fails (here: truncation only_second, and no pair to cut) has
    no encoding to hand on, and the batcher gives it the error `run` gives,
    next to texts that ran in the same round."""
    from test_runtime import write_manifest
    cli = make_bundle(tmp_path / "t", batch_size=4, selftest=False)
    tj = tmp_path / "t/model/tokenizer/tokenizer.json"
    doc = json.loads(tj.read_text())
    doc["truncation"] = {"direction": "Right", "max_length": 512, "strategy": "OnlySecond",
                         "stride": 0}
    tj.write_text(json.dumps(doc))
    write_manifest(tmp_path / "t")
    long_text = " ".join(WORDS * 4)      # past max_sequence_length 32: must be cut
    texts = ["hello", long_text, "free money", "lunch at noon"]
    want = jsonl(run_texts(cli, texts).stdout)
    assert "only_second" in want[1]["error"] and "label" in want[0], want
    srv = server_factory(cli, "--max-batch", "2")
    status, _, body = srv.post("/predict", {"texts": texts})
    assert status == 200, body
    for got, w in zip(body["results"], want):
        assert same(got, w), (got, w)
    status, _, err = srv.post("/predict", {"text": long_text})
    assert status == 422 and "only_second" in err["error"]["message"], err
    # the texts that did tokenize still count in the metrics' batches
    samples, _ = parse_prometheus(srv.get("/metrics")[2].decode())
    assert samples[("nexus_batch_size_sum", ())] == len(texts) + 1, samples
    assert srv.stop() == 0


def test_round_past_the_encoding_arena(tmp_path, server_factory):
    """serve keeps a round's encodings for the batcher up to 256 Ki tokens
    (SV_ARENA_TOKENS); the texts past that are counted and tokenized
    again, and still answer as `run` does, with the same usage."""
    cli = make_bundle(tmp_path / "a", task="embedding", selftest=False, max_len=4096,
                      batch_size=8, extra_yaml="pooling: mean\nnormalize: true\noutput: hidden\n")
    texts = [" ".join(WORDS[(i + k) % len(WORDS)] for k in range(3900 + i)) for i in range(72)]
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    want = jsonl(run(cli, "run", "--input", inp).stdout)
    ntok = sum(len(i) for i in jsonl(run(cli, "tokenize", "--input", inp).stdout))
    assert len(want) == len(texts) and ntok > 1 << 18, ntok     # past the arena
    srv = server_factory(cli, "--max-body", 4 << 20)
    status, _, body = srv.post("/v1/embeddings", {"input": texts})
    assert status == 200, body
    assert body["usage"] == {"prompt_tokens": ntok, "total_tokens": ntok}
    for d, w in zip(body["data"], want):
        assert same(d["embedding"], w["embedding"])
    assert srv.stop() == 0


def test_rerank_scores_pairs_as_run_does(tmp_path, server_factory):
    """POST /rerank (Cohere's and Jina's shape): each document paired with
    the query as `run --text QUERY --pair DOC` pairs it, sorted by score,
    top_n kept, documents echoed on request."""
    cli, _ = with_model(tmp_path / "r", 64, classes=2, task="rerank", batch_size=4)
    query, docs = "free money", ["lunch at noon", "click now for free money", "x",
                                 "hello world", "money money money", "tomorrow"]
    r = run(cli, "run", *sum((["--text", query, "--pair", d] for d in docs), []))
    assert r.returncode == 0, r.stderr
    want = [x["score"] for x in jsonl(r.stdout)]
    assert len(set(want)) == len(want)
    order = sorted(range(len(docs)), key=lambda i: -want[i])
    srv = server_factory(cli, "--max-batch", "4")
    status, _, body = srv.post("/rerank", {"query": query, "documents": docs})
    assert status == 200, body
    assert [x["index"] for x in body["results"]] == order
    for x in body["results"]:
        assert x["relevance_score"] == pytest.approx(want[x["index"]], abs=1e-6)
        assert "document" not in x
    assert body["model"] and body["usage"]["total_tokens"] > 0
    status, _, top = srv.post("/rerank", {"query": query, "documents": docs, "top_n": 2,
                                          "return_documents": True})
    assert status == 200 and [x["index"] for x in top["results"]] == order[:2]
    assert [x["document"]["text"] for x in top["results"]] == [docs[i] for i in order[:2]]
    for body, why in [({"documents": ["a"]}, "query"), ({"query": "q"}, "documents"),
                      ({"query": "q", "documents": []}, "non-empty"),
                      ({"query": "q", "documents": ["a"], "top_n": 0}, "top_n"),
                      ({"query": "q", "documents": ["a"], "return_documents": 1}, "true or")]:
        status, _, err = srv.post("/rerank", body)
        assert status == 400 and why in err["error"]["message"], (body, err)
    status, _, err = srv.post("/predict", {"text": "x"})
    assert status == 200 and "score" in err


def unix_request(path, method, url, body=b""):
    """One HTTP/1.1 request over the unix socket at path: (status, body)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    try:
        s.connect(str(path))
        s.sendall(f"{method} {url} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    finally:
        s.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), rest


def test_unix_socket_listener(clf, tmp_path):
    """--unix PATH: the same API on a unix socket; the ready file names the
    path; a stale socket (nothing listening) is taken over, anything else
    at the path is refused and left alone; the socket goes at exit."""
    cli, want = clf
    sock, ready = tmp_path / "s.sock", tmp_path / "ready"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock))
    stale.close()
    proc = subprocess.Popen([str(cli), "serve", "--unix", str(sock), "--ready-file", str(ready)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert ready.read_text() == f"{sock}\n"
        while unix_request(sock, "GET", "/health")[0] != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        for t in MANY[:3]:
            status, body = unix_request(sock, "POST", "/predict", json.dumps({"text": t}).encode())
            assert status == 200 and same(json.loads(body), want[t])
        # a second server on the same path: refused, the first keeps it
        r = run(cli, "serve", "--unix", sock)
        assert r.returncode == 3 and "another server" in r.stderr
        assert unix_request(sock, "GET", "/health")[0] == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert not sock.exists()
    sock.write_text("not a socket")
    r = run(cli, "serve", "--unix", sock)
    assert r.returncode == 2 and "not a socket" in r.stderr
    assert sock.read_text() == "not a socket"
    r = run(cli, "serve", "--unix", sock, "--port", "9")
    assert r.returncode == 2 and "give one of --unix" in r.stderr


def test_metrics_parse_with_prometheus_client(clf, server_factory):
    """/metrics read by the Prometheus project's own text parser
    (python3-prometheus-client): every family parses, with the types and
    the samples a scraper needs after a few requests."""
    parser = pytest.importorskip("prometheus_client.parser")
    cli, want = clf
    srv = server_factory(cli)
    for t in MANY[:5]:
        status, _, body = srv.post("/predict", {"text": t})
        assert status == 200 and same(body, want[t])
    assert srv.post("/predict", "{not json")[0] == 400
    deadline = time.monotonic() + 10
    while True:
        fams = {f.name: f for f in parser.text_string_to_metric_families(
            srv.get("/metrics")[2].decode())}
        ok = [s for s in fams["nexus_requests"].samples
              if s.name == "nexus_requests_total" and s.labels.get("status") == "200"
              and s.labels.get("endpoint") == "/predict"]
        if (ok and ok[0].value == 5) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert ok and ok[0].value == 5, fams["nexus_requests"].samples
    assert fams["nexus_requests"].type == "counter"
    bad = [s for s in fams["nexus_requests"].samples if s.labels.get("status") == "400"]
    assert bad and bad[0].value == 1
    for name in ("nexus_request_duration_seconds", "nexus_batch_size"):
        assert fams[name].type == "histogram", name
        buckets = [s for s in fams[name].samples if s.name == name + "_bucket"]
        assert buckets and buckets[-1].labels["le"] == "+Inf"
        counts = [s.value for s in buckets if s.labels.get("endpoint", "/predict") == "/predict"]
        assert counts == sorted(counts), (name, counts)   # cumulative
    assert fams["nexus_batch_size"].samples[-1].value >= 1   # _sum or _count after the buckets
    assert fams["nexus_queue_depth"].type == "gauge"
    assert srv.stop() == 0


def test_threads_option(clf, server_factory):
    """--threads N sets ONNX Runtime's intra-op threads of serve (0: all
    cores), as generate's does; the answers do not change."""
    cli, want = clf
    r = subprocess.run([str(cli), "serve", "--threads", "x"], capture_output=True, text=True)
    assert r.returncode == 2 and "--threads" in r.stderr
    for n in ("0", "2"):
        srv = server_factory(cli, "--threads", n)
        got = concurrently(8, lambda i: srv.post("/predict", {"text": MANY[i]}))
        assert all(g[0] == 200 and same(g[2], want[MANY[i]]) for i, g in enumerate(got)), got
        assert srv.stop() == 0


def serve_with_failure(cli, tmp_path, shim, name, nth, requests):
    """serve with the shim failing call nth of name: (fired, how it went).
    A failure at start must stop the server with an error naming it; one
    in a request must answer that request 500 and harm no other; a server
    whose calls all succeeded answers every request."""
    import os
    import pthread_shim
    ready = tmp_path / f"port-{name}-{nth}"
    p = subprocess.Popen([str(cli), "serve", "--port", "0", "--ready-file", str(ready)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=pthread_shim.env(shim, name, nth, os.environ))
    deadline, port = time.monotonic() + 60, None
    try:
        while p.poll() is None and time.monotonic() < deadline:
            if port is None and ready.exists() and ready.read_text():
                port = int(ready.read_text())
            if port is not None:
                try:
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    c.request("GET", "/health")
                    if c.getresponse().status == 200:
                        break
                except OSError:
                    pass
            time.sleep(0.05)
        if p.poll() is not None:        # stopped at start
            err = p.stderr.read()
            assert "SHIM: failed" in err, err
            assert p.returncode in (1, 2, 3), (p.returncode, err)
            assert "nexus_cli serve: error:" in err and "cannot" in err, err
            return True, "start"
        answers = []
        for path, body in requests:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            r = c.getresponse()
            answers.append((r.status, r.read()))
        assert p.poll() is None
        p.send_signal(signal.SIGTERM)
        assert p.wait(60) == 0
        err = p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    failed = [a for a in answers if a[0] != 200]
    if "SHIM: failed" not in err:
        assert not failed, answers
        return False, "none"
    # the failed call was a request's: that request alone gets a JSON 500
    assert "ready" in err and len(failed) == 1, (err, answers)
    assert failed[0][0] == 500 and b"cannot" in failed[0][1], answers
    return True, "request"


def test_pthread_failures_are_errors_not_ignored(clf, tmp_path):
    """Every pthread_mutex_init, pthread_cond_init, pthread_create and
    condattr call serve makes is checked: the Nth one failing (an
    LD_PRELOAD shim, for N = 1, 2, ... until none is left) stops the start
    with an error saying what it could not make, or answers that one
    request 500; never a server that runs on an uninitialised lock."""
    import pthread_shim
    shim = pthread_shim.build(tmp_path)
    cli, _ = clf
    reqs = [("/predict", {"text": "hello"}), ("/predict", {"texts": ["free money", "x"]})]
    seen = {}
    for name in pthread_shim.FUNCTIONS:
        for nth in range(1, 12):
            fired, where = serve_with_failure(cli, tmp_path, shim, name, nth, reqs)
            if not fired:
                break
            seen[(name, nth)] = where
        else:
            raise AssertionError(f"{name} still failing at call {nth}")
    # the start's calls and the requests' (a condition per request) were hit
    assert seen.get(("pthread_mutex_init", 1)) == "start", seen
    assert "request" in seen.values() and list(seen.values()).count("start") >= 5, seen
