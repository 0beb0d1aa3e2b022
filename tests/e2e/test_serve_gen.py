"""`nexus_cli serve` on a generation bundle (issue #18): POST /v1/completions
and /v1/chat/completions in OpenAI's shape, whole or streamed as server-sent
events.  The text must be `generate`'s for the same settings, bad input a
JSON error that harms no other request, and a client that goes away
mid-stream must free the one generation slot.  The server listens on
127.0.0.1, started here and stopped by pid."""
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from conftest import run  # noqa: E402
import test_generate as tg  # noqa: E402

gen_models = pytest.importorskip("gen_models")   # needs torch
HERE = pathlib.Path(__file__).parent
CTX = 512
MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "the cat?"}]


BOS = "<|endoftext|>"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, request):
    """A decoder without cache (every step runs the whole sequence, so a long
    generation takes seconds) with a chat template that writes the BOS, and a
    post-processor that adds it too (as Llama's tokenizers do): a rendered
    chat must be encoded without the post-processor's."""
    nexus = request.getfixturevalue("nexus")
    tmp = tmp_path_factory.mktemp("sgen")
    root, out, eos = tg.make(tmp, "sg", "plain", rt=tg.runtime_yaml(max_len=CTX),
                             genconfig={"eos_token_id": 999999})
    tj, bos = gen_models.bytelevel_tokenizer()
    tok = json.loads(tj)
    tok["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": BOS, "type_id": 0}},
                   {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": BOS, "type_id": 0}},
                 {"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {BOS: {"id": BOS, "ids": [bos], "tokens": [BOS]}}}
    (root / "artifacts/tokenizer/tokenizer.json").write_text(json.dumps(tok), encoding="utf-8")
    (root / "artifacts/student.onnx").write_bytes(
        gen_models.decoder_onnx(len(tok["model"]["vocab"]) + 1, "plain", d=96, positions=CTX))
    template = "{{ bos_token }}" + (HERE / "chat_templates/smollm2.jinja").read_text()
    (root / "artifacts/tokenizer/tokenizer_config.json").write_text(
        json.dumps({"chat_template": template, "bos_token": BOS, "eos_token": "</s>"}))
    r = tg.build(nexus, root, out)
    assert r.returncode == 0, r.stderr
    return out, root, bos


class Server:
    def __init__(self, bundle, tmp):
        self.ready = tmp / f"port-{time.monotonic_ns()}"
        self.log = tmp / f"serve-{time.monotonic_ns()}.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([str(bundle / "bin/nexus_cli"), "serve", "--port", "0",
                                         "--ready-file", str(self.ready), "--queue", "4"],
                                        stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 60
        while not self.ready.exists() or "ready" not in self.log.read_text():
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "serve was not ready in 60 s"
            time.sleep(0.05)
        self.port = int(self.ready.read_text())

    def raw(self, path, body):
        """(status, headers, body bytes) of a POST with a raw body."""
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            c.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            r = c.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            c.close()

    def post(self, path, doc):
        s, h, b = self.raw(path, json.dumps(doc))
        return s, h, (json.loads(b) if "json" in h.get("Content-Type", "") else sse(b))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def sse(body):
    """The events of a text/event-stream body: JSON objects, then "[DONE]"."""
    text = body.decode("utf-8")      # strict: a broken character fails here
    assert text.endswith("\n\n"), text[-80:]
    events = []
    for block in text[:-2].split("\n\n"):
        assert block.startswith("data: ") and "\n" not in block, block
        data = block[len("data: "):]
        events.append(data if data == "[DONE]" else json.loads(data))
    return events


@pytest.fixture
def server(bundle, tmp_path):
    s = Server(bundle[0], tmp_path)
    yield s
    s.stop()


def generate(bundle, prompt, *args):
    r = run(bundle[0] / "bin/nexus_cli", "generate", "--json", "--prompt", prompt, *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def chat_ids(bundle, tmp_path, msgs, new):
    """(prompt ids, the greedy new ids) of msgs as transformers would run
    them: the rendering encoded without the post-processor's BOS, continued
    by the Node reference loop (None when onnxruntime-node is missing)."""
    out, root, bos = bundle
    f = tmp_path / "msgs.json"
    f.write_text(json.dumps(msgs))
    r = run(out / "bin/nexus_cli", "chat", "--messages", f)
    assert r.returncode == 0 and r.stdout.startswith(BOS), r.stderr
    ids = tg.tokenize(out, r.stdout)
    assert ids[:2] == [bos, bos]        # the post-processor's, then the template's
    ids = ids[1:]
    mods = tg.node_modules()
    if not mods:
        return ids, None
    ref = subprocess.run(["node", str(HERE / "gen_oracle.js"), str(root / "artifacts/student.onnx"),
                          json.dumps(ids), str(new), "[999999]", str(gen_models.H), str(96 // gen_models.H)],
                         env=dict(os.environ, NODE_PATH=str(mods)), capture_output=True,
                         text=True, timeout=120)
    assert ref.returncode == 0, ref.stderr
    return ids, json.loads(ref.stdout)["ids"]


def detok(bundle, ids):
    r = run(bundle[0] / "bin/nexus_cli", "detokenize", "--skip-special-tokens", "--json", "--ids",
            json.dumps(ids))
    return json.loads(r.stdout)["text"]


def test_completions_whole_and_streamed_equal_generate(bundle, server):
    for prompt, settings, flags in (
            ("the theme", {}, []),
            ("in an inn", {"temperature": 0.9, "top_k": 40, "seed": 7},
             ["--temperature", "0.9", "--top-k", "40", "--seed", "7"])):
        want = generate(bundle, prompt, "--max-new-tokens", "24", *flags)
        doc = {"model": "anything", "prompt": prompt, "max_tokens": 24, **settings}
        st, h, got = server.post("/v1/completions", doc)
        assert st == 200, got
        assert got["object"] == "text_completion" and got["choices"][0]["text"] == want["text"]
        assert got["choices"][0]["finish_reason"] == "length"
        assert got["usage"] == {"prompt_tokens": want["prompt_tokens"], "completion_tokens": 24,
                                "total_tokens": want["prompt_tokens"] + 24}
        st, h, events = server.post("/v1/completions", {**doc, "stream": True})
        assert st == 200 and h["Content-Type"] == "text/event-stream", events
        assert events[-1] == "[DONE]" and len(events) > 3
        chunks = events[:-1]
        assert all(c["object"] == "text_completion" and c["id"] == chunks[0]["id"]
                   for c in chunks)
        assert "".join(c["choices"][0]["text"] for c in chunks) == want["text"]
        assert [c["choices"][0]["finish_reason"] for c in chunks] == \
            [None] * (len(chunks) - 1) + ["length"]
        assert chunks[-1]["usage"]["completion_tokens"] == 24


def test_chat_completions_render_the_template(bundle, server, tmp_path):
    cli = bundle[0] / "bin/nexus_cli"
    ids, want = chat_ids(bundle, tmp_path, MESSAGES, 12)
    line = json.dumps({"messages": MESSAGES})
    r = run(cli, "generate", "--chat", "--json", "--input", "-", "--max-new-tokens", "12",
            input=line + "\n")
    assert r.returncode == 0, r.stderr
    gen = json.loads(r.stdout)
    assert gen["prompt_tokens"] == len(ids)
    if want is not None:
        assert gen["ids"] == want
    st, _, got = server.post("/v1/chat/completions", {"messages": MESSAGES, "max_tokens": 12})
    assert st == 200, got
    assert got["object"] == "chat.completion" and got["usage"]["prompt_tokens"] == len(ids)
    assert got["choices"][0]["message"] == {"role": "assistant", "content": gen["text"]}
    assert gen["text"] == detok(bundle, gen["ids"])
    st, _, events = server.post("/v1/chat/completions",
                                {"messages": MESSAGES, "max_tokens": 12, "stream": True})
    assert st == 200 and events[-1] == "[DONE]"
    deltas = [c["choices"][0]["delta"] for c in events[:-1]]
    assert deltas[0]["role"] == "assistant"
    assert "".join(d.get("content", "") for d in deltas) == gen["text"]
    st, _, err = server.post("/v1/chat/completions", {"messages": "hello"})
    assert st == 400 and "messages" in err["error"]["message"]


def test_bad_input_is_a_json_error_and_harms_no_one(bundle, server):
    cases = [
        ('{"prompt": "the cat", "temperature": NaN}', 400, "malformed JSON"),
        ('{"prompt": "the cat", "temperature": "NaN"}', 400, "must be numbers"),
        ('{"prompt": "the cat", "max_tokens": 1000000000}', 400, "65536"),
        ('{"prompt": "the cat", "max_tokens": 1000000000, "stream": true}', 400, "65536"),
        ('{"prompt": "", "stream": true}', 422, "empty"),
        ('{"prompt": ""}', 422, "empty"),
        (json.dumps({"prompt": "the " * (CTX + 10)}), 422, "max_sequence_length"),
        (json.dumps({"prompt": "the " * (CTX + 10), "stream": True}), 422,
         "max_sequence_length"),
        ('{"prompt": ["a", "b"]}', 400, "prompt"),
        ('{"prompt": "a", "n": 2}', 400, "\"n\""),
        ('[1]', 400, "JSON object"),
    ]
    for body, status, words in cases:
        st, h, got = server.raw("/v1/completions", body)
        assert st == status and h["Content-Type"] == "application/json", (body, got)
        assert words in json.loads(got)["error"]["message"], (body, got)
    st, _, got = server.post("/predict", {"text": "the cat"})
    assert st == 400 and "/v1/completions" in got["error"]["message"]
    want = generate(bundle, "the cat", "--max-new-tokens", "5")
    st, _, got = server.post("/v1/completions", {"prompt": "the cat", "max_tokens": 5})
    assert st == 200 and got["choices"][0]["text"] == want["text"]


def test_client_gone_mid_stream_frees_the_slot(bundle, server):
    body = json.dumps({"prompt": "the theme", "max_tokens": CTX, "stream": True}).encode()
    s = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    got = b""
    while got.count(b"data: ") < 2:
        part = s.recv(4096)
        assert part, got
        got += part
    assert b"200 OK" in got and b"text/event-stream" in got
    t0 = time.monotonic()
    s.close()
    # the next request is answered at once: it did not wait for the
    # abandoned generation (hundreds of steps over a growing sequence)
    st, _, res = server.post("/v1/completions", {"prompt": "a", "max_tokens": 2})
    assert st == 200, res
    waited = time.monotonic() - t0
    deadline = time.monotonic() + 30
    while "went away" not in server.log.read_text():
        assert time.monotonic() < deadline, server.log.read_text()
        time.sleep(0.05)
    # the whole generation, for comparison
    t1 = time.monotonic()
    st, _, full = server.post("/v1/completions", {"prompt": "the theme", "max_tokens": CTX})
    whole = time.monotonic() - t1
    assert st == 200 and full["usage"]["completion_tokens"] > 400
    assert waited < whole / 2, (waited, whole)


def test_generate_chat_renders_messages_lines(bundle, tmp_path):
    """generate --chat: a {"messages": [...]} line through the template, a
    plain text as one user message, encoded without the post-processor's
    special tokens; the ids of the Node reference loop."""
    cli = bundle[0] / "bin/nexus_cli"
    one = [{"role": "user", "content": "an ant"}]
    (ids2, want2), (ids1, want1) = (chat_ids(bundle, tmp_path, m, 6) for m in (MESSAGES, one))
    lines = [json.dumps({"messages": MESSAGES, "max_new_tokens": 6}), "an ant"]
    r = run(cli, "generate", "--chat", "--json", "--input", "-", "--max-new-tokens", "6",
            input="\n".join(lines) + "\n")
    assert r.returncode == 0, r.stderr
    got = [json.loads(x) for x in r.stdout.splitlines()]
    assert [g["prompt_tokens"] for g in got] == [len(ids2), len(ids1)]
    if want1 is not None:
        assert [g["ids"] for g in got] == [want2, want1]
    r = run(cli, "generate", "--chat", "--json", "--prompt", "an ant", "--max-new-tokens", "6")
    assert json.loads(r.stdout)["ids"] == got[1]["ids"]
    # without --chat a messages line is an error for itself only
    r = run(cli, "generate", "--json", "--input", "-", "--max-new-tokens", "2",
            input=lines[0] + "\nthe cat\n")
    res = [json.loads(x) for x in r.stdout.splitlines()]
    assert r.returncode == 3 and "--chat" in res[0]["error"] and len(res[1]["ids"]) == 2


def test_pthread_failures_are_errors_not_ignored(bundle, tmp_path):
    """The generation side's locks, its request's condition and a stream's
    thread: the Nth call failing (LD_PRELOAD shim) stops the start with an
    error, or answers that one request 500 (test_serve.py's loop)."""
    import pthread_shim
    from test_serve import serve_with_failure
    shim = pthread_shim.build(tmp_path)
    doc = {"prompt": "the theme", "max_tokens": 2}
    reqs = [("/v1/completions", doc), ("/v1/completions", {**doc, "stream": True})]
    seen = {}
    for name in ("pthread_mutex_init", "pthread_cond_init", "pthread_create"):
        for nth in range(1, 12):
            fired, where = serve_with_failure(bundle[0] / "bin/nexus_cli", tmp_path, shim,
                                              name, nth, reqs)
            if not fired:
                break
            seen[(name, nth)] = where
        else:
            raise AssertionError(f"{name} still failing at call {nth}")
    assert seen.get(("pthread_mutex_init", 4)) == "start", seen      # sv_gen_start's
    assert ("pthread_create", 1) in seen and list(seen.values()).count("request") >= 3, seen
