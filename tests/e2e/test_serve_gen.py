"""`nexus_cli serve` on a generation bundle (issue #18): POST /v1/completions
and /v1/chat/completions in OpenAI's shape, whole or streamed as server-sent
events.  The text must be `generate`'s for the same settings, bad input a
JSON error that harms no other request, and a client that goes away
mid-stream must free the one generation slot.  The server listens on
127.0.0.1, started here and stopped by pid."""
import json
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


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, request):
    """A decoder without cache (every step runs the whole sequence, so a long
    generation takes seconds) with a chat template."""
    nexus = request.getfixturevalue("nexus")
    tmp = tmp_path_factory.mktemp("sgen")
    root, out, eos = tg.make(tmp, "sg", "plain", rt=tg.runtime_yaml(max_len=CTX),
                             genconfig={"eos_token_id": 999999})
    tj, _ = gen_models.bytelevel_tokenizer()
    vocab = len(json.loads(tj)["model"]["vocab"]) + 1
    (root / "artifacts/student.onnx").write_bytes(
        gen_models.decoder_onnx(vocab, "plain", d=96, positions=CTX))
    template = (HERE / "chat_templates/smollm2.jinja").read_text()
    (root / "artifacts/tokenizer/tokenizer_config.json").write_text(
        json.dumps({"chat_template": template, "eos_token": "</s>"}))
    r = tg.build(nexus, root, out)
    assert r.returncode == 0, r.stderr
    return out


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
    s = Server(bundle, tmp_path)
    yield s
    s.stop()


def generate(bundle, prompt, *args):
    r = run(bundle / "bin/nexus_cli", "generate", "--json", "--prompt", prompt, *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


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
    msgs = tmp_path / "m.json"
    msgs.write_text(json.dumps(MESSAGES))
    r = run(bundle / "bin/nexus_cli", "chat", "--messages", msgs)
    assert r.returncode == 0, r.stderr
    want = generate(bundle, r.stdout, "--max-new-tokens", "12")
    st, _, got = server.post("/v1/chat/completions", {"messages": MESSAGES, "max_tokens": 12})
    assert st == 200, got
    assert got["object"] == "chat.completion"
    assert got["choices"][0]["message"] == {"role": "assistant", "content": want["text"]}
    st, _, events = server.post("/v1/chat/completions",
                                {"messages": MESSAGES, "max_tokens": 12, "stream": True})
    assert st == 200 and events[-1] == "[DONE]"
    deltas = [c["choices"][0]["delta"] for c in events[:-1]]
    assert deltas[0]["role"] == "assistant"
    assert "".join(d.get("content", "") for d in deltas) == want["text"]
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
    plain text as one user message; the same ids as the rendered prompt."""
    cli = bundle / "bin/nexus_cli"
    rendered = {}
    for name, msgs in (("two", MESSAGES), ("one", [{"role": "user", "content": "an ant"}])):
        (tmp_path / f"{name}.json").write_text(json.dumps(msgs))
        r = run(cli, "chat", "--messages", tmp_path / f"{name}.json")
        assert r.returncode == 0, r.stderr
        rendered[name] = generate(bundle, r.stdout, "--max-new-tokens", "6")
    lines = [json.dumps({"messages": MESSAGES, "max_new_tokens": 6}), "an ant"]
    r = run(cli, "generate", "--chat", "--json", "--input", "-", "--max-new-tokens", "6",
            input="\n".join(lines) + "\n")
    assert r.returncode == 0, r.stderr
    got = [json.loads(x) for x in r.stdout.splitlines()]
    assert [g["ids"] for g in got] == [rendered["two"]["ids"], rendered["one"]["ids"]]
    r = run(cli, "generate", "--chat", "--json", "--prompt", "an ant", "--max-new-tokens", "6")
    assert json.loads(r.stdout)["ids"] == rendered["one"]["ids"]
    # without --chat a messages line is an error for itself only
    r = run(cli, "generate", "--json", "--input", "-", "--max-new-tokens", "2",
            input=lines[0] + "\nthe cat\n")
    res = [json.loads(x) for x in r.stdout.splitlines()]
    assert r.returncode == 3 and "--chat" in res[0]["error"] and len(res[1]["ids"]) == 2
