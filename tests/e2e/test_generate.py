"""task: generation end to end: a small GPT-2-like torch decoder exported in
Optimum's layout (gen_models.py) is built into a bundle, and nexus_cli
generate must match a reference greedy loop on onnxruntime-node token for
token (with and without cache), sample reproducibly from a seed whatever
the thread count, stream text that equals the oracle's full decode, stop on
strings spanning tokens, and fail one request at a time on bad input; the
build refuses a cache layout it cannot drive, and TRV-5 fails a bundle whose
recorded greedy ids differ."""
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from conftest import run  # noqa: E402
import workspace  # noqa: E402

gen_models = pytest.importorskip("gen_models")   # needs torch
HERE = pathlib.Path(__file__).parent
SELFTEST = '["the cat", "an ant in the hat"]'
PROMPTS = ["the theme", "in an inn", "a", "Tea at the hotel"]


def node_modules():
    cache = pathlib.Path(os.environ.get("NEXUS_CACHE", pathlib.Path.home() / ".cache/nexus"))
    for d in (os.environ.get("NEXUS_BENCH_NPM"), cache / "bench/npm", cache):
        if d and (pathlib.Path(d) / "node_modules/onnxruntime-node").is_dir():
            return pathlib.Path(d) / "node_modules"
    return None


def runtime_yaml(max_len=48, extra=""):
    return (f"task: generation\nmax_sequence_length: {max_len}\nthreads: 1\n"
            f"integrity: full\npython_packages: [numpy, onnxruntime]\n{extra}")


def make(tmp, name, kind="past", tok="bytelevel", rt=None, nan_id=None, genconfig=None):
    """(workspace, bundle dir or None, build result)."""
    tj, eos = (gen_models.bytelevel_tokenizer() if tok == "bytelevel"
               else gen_models.bytefallback_tokenizer())
    vocab = len(json.loads(tj)["model"]["vocab"]) + (1 if tok == "bytelevel" else 0)
    root = workspace.make_workspace(
        tmp / name, student=gen_models.decoder_onnx(vocab, kind, nan_id=nan_id),
        tokenizer_files=("tokenizer.json",), runtime_yaml=rt or runtime_yaml(),
        config={"selftest": SELFTEST, "architecture": "TinyGPT-2L"})
    (root / "artifacts/tokenizer/tokenizer.json").write_text(tj, encoding="utf-8")
    if genconfig is not None:
        (root / "artifacts/tokenizer/generation_config.json").write_text(json.dumps(genconfig))
    out = tmp / f"{name}_bundle"
    return root, out, eos


def build(nexus, root, out):
    r = run(nexus, "build", root, "-o", out, timeout=600)
    return r


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, request):
    """{kind: (bundle, eos)} for the cache and no-cache exports."""
    nexus = request.getfixturevalue("nexus")
    tmp = tmp_path_factory.mktemp("gen")
    res = {}
    for kind in ("past", "plain"):
        root, out, eos = make(tmp, kind, kind, genconfig={"eos_token_id": 999999})
        r = build(nexus, root, out)
        assert r.returncode == 0, r.stderr
        res[kind] = (out, eos, root)
    return res


def cli(bundle):
    return str(bundle / "bin/nexus_cli")


def gen_json(bundle, *args, input=None):
    r = run(cli(bundle), "generate", "--json", *args, input=input, timeout=120)
    return r, [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def tokenize(bundle, text):
    r = run(cli(bundle), "tokenize", "--text", text)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_greedy_equals_node_reference(bundles):
    mods = node_modules()
    if not mods:
        pytest.skip("onnxruntime-node not installed (bench/run.py installs it)")
    for kind in ("past", "plain"):
        bundle, eos, root = bundles[kind]
        for prompt in PROMPTS:
            r, (res,) = gen_json(bundle, "--prompt", prompt, "--max-new-tokens", "20")
            assert r.returncode == 0, r.stderr
            ids = tokenize(bundle, prompt)
            ref = subprocess.run(
                ["node", str(HERE / "gen_oracle.js"), str(root / "artifacts/student.onnx"),
                 json.dumps(ids), "20", "[999999]", str(gen_models.H),
                 str(gen_models.D // gen_models.H)],
                env=dict(os.environ, NODE_PATH=str(mods)), capture_output=True, text=True,
                timeout=120)
            assert ref.returncode == 0, ref.stderr
            assert res["ids"] == json.loads(ref.stdout)["ids"], (kind, prompt)
            assert res["finish_reason"] == "length" and res["prompt_tokens"] == len(ids)
            assert res["ttft_ms"] > 0


def test_cache_and_plain_agree_and_run_verb(bundles, nexus):
    (past, _, _), (plain, _, _) = bundles["past"], bundles["plain"]
    a = gen_json(past, "--prompt", "the theme", "--max-new-tokens", "30")[1]
    b = gen_json(plain, "--prompt", "the theme", "--max-new-tokens", "30")[1]
    assert a[0]["ids"] == b[0]["ids"]
    # `run` on a generation bundle prints the same continuation as JSONL
    r = run(cli(past), "run", "--text", "the theme")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ids"][:8] == a[0]["ids"][:8]
    # and `nexus run`, the same in the sandbox; an empty prompt fails alone
    r = run(nexus, "run", past, "-t", "the theme", "-t", "")
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert r.returncode == 3, r.stderr
    assert lines[0]["ids"][:8] == a[0]["ids"][:8] and lines[1]["code"] == "empty-prompt"


def test_merged_decoder_with_use_cache_branch(bundles, tmp_path, nexus):
    """Optimum's merged decoder (an If on use_cache_branch): the prefill takes
    the branch without cache, the steps the other; same ids as the with-past
    export of the same weights."""
    tj, _ = gen_models.bytelevel_tokenizer()
    root, out, _ = make(tmp_path, "merged", genconfig={"eos_token_id": 999999})
    (root / "artifacts/student.onnx").write_bytes(
        gen_models.merged_onnx(len(json.loads(tj)["model"]["vocab"]) + 1))
    r = build(nexus, root, out)
    assert r.returncode == 0, r.stderr
    info = json.loads(run(cli(out), "info", "--json").stdout)
    assert "use_cache_branch" in [i["name"] for i in info["inputs"]]
    past = bundles["past"][0]
    for prompt in PROMPTS[:2]:
        a = gen_json(out, "--prompt", prompt, "--max-new-tokens", "16")[1][0]
        b = gen_json(past, "--prompt", prompt, "--max-new-tokens", "16")[1][0]
        assert a["ids"] == b["ids"], prompt


def test_seeded_sampling_reproducible_across_runs_and_threads(bundles):
    bundle = bundles["past"][0]
    args = ["--prompt", "the theme", "--max-new-tokens", "24", "--temperature", "0.9",
            "--top-k", "40", "--top-p", "0.95", "--repetition-penalty", "1.2"]
    outs = [gen_json(bundle, *args, "--seed", "7", "--threads", t)[1][0]["ids"]
            for t in ("1", "1", "2", "0")]
    assert all(o == outs[0] for o in outs), outs
    others = {tuple(gen_json(bundle, *args, "--seed", s)[1][0]["ids"]) for s in "1234"}
    assert len(others | {tuple(outs[0])}) > 1, "the seed changes nothing"
    greedy = gen_json(bundle, "--prompt", "the theme", "--max-new-tokens", "24")[1][0]["ids"]
    assert outs[0] != greedy


@pytest.mark.parametrize("tok", ["bytelevel", "bytefallback"])
def test_stream_equals_oracle_full_decode(tmp_path, nexus, tok):
    """A scripted decoder spells text whose multi-byte characters come one
    byte token at a time: the streamed text, in pieces, must never hold a
    broken character and must add up to the full decode (the oracle's)."""
    prompt = "the ant"
    eos = (gen_models.bytelevel_tokenizer() if tok == "bytelevel"
           else gen_models.bytefallback_tokenizer())[1]
    root, out, _ = make(tmp_path, tok, tok=tok, genconfig={"eos_token_id": [eos]})
    plan = gen_models.script_ids(tok)
    tj = (root / "artifacts/tokenizer/tokenizer.json").read_text(encoding="utf-8")
    vocab = len(json.loads(tj)["model"]["vocab"]) + (1 if tok == "bytelevel" else 0)
    # the prompt's last position picks plan[0]: pad the plan in front
    n = 5                                    # tokens of "the ant" in both (checked below)
    (root / "artifacts/student.onnx").write_bytes(
        gen_models.script_onnx(vocab, [plan[0]] * (n - 1) + plan + [eos]))
    r = build(nexus, root, out)
    assert r.returncode == 0, r.stderr
    assert len(tokenize(out, prompt)) == n
    jr, (res,) = gen_json(out, "--prompt", prompt, "--max-new-tokens", "60")
    assert jr.returncode == 0, jr.stderr
    assert res["ids"] == plan + [eos] and res["finish_reason"] == "eos"
    assert res["text"].strip() == gen_models.SCRIPT_TEXT
    # one write per piece: strace-free check through a pipe is not possible,
    # so check the pieces by --max-new-tokens: every prefix streams valid text
    for k in range(1, len(plan) + 1):
        p = run(cli(out), "generate", "--prompt", prompt, "--max-new-tokens", str(k),
                text=False, capture_output=True)
        assert p.returncode == 0
        got = p.stdout.decode("utf-8")             # strict: never a broken character
        full = json.loads(run(cli(out), "detokenize", "--skip-special-tokens", "--json",
                              "--ids", json.dumps(plan[:k])).stdout)["text"]
        if "\ufffd" in full:   # cut inside a character: what came before it, no more
            assert res["text"].startswith(got[:-1].rstrip("\ufffd")) and len(got) > k // 4, k
        else:
            assert got == full + "\n", k
    mods = node_modules()
    if mods and (mods / "tokenizers").is_dir():
        ids = tmp_path / "ids.jsonl"
        ids.write_text(json.dumps(res["ids"]) + "\n")
        dec = tmp_path / "dec.jsonl"
        subprocess.run(["node", str(HERE / "tok_oracle.js"), "decode",
                        str(out / "model/tokenizer/tokenizer.json"), str(ids), str(dec)],
                       env=dict(os.environ, NODE_PATH=str(mods)), check=True, timeout=120)
        assert res["text"] == json.loads(dec.read_text())["text_skip"]


def test_stop_string_spanning_two_tokens(bundles):
    bundle = bundles["past"][0]
    res = gen_json(bundle, "--prompt", "the theme", "--max-new-tokens", "30")[1][0]
    text, ids = res["text"], res["ids"]
    # a stop string made of the end of one token's text and the start of the next
    for k in range(2, len(ids) - 1):
        a = run(cli(bundle), "detokenize", "--json", "--ids", json.dumps(ids[:k]))
        b = run(cli(bundle), "detokenize", "--json", "--ids", json.dumps(ids[:k + 1]))
        pa, pb = json.loads(a.stdout)["text"], json.loads(b.stdout)["text"]
        if len(pb) > len(pa) and pa and text.startswith(pb) and pa[-1:].isprintable():
            stop = pa[-1] + pb[len(pa)]
            if text.find(stop) == len(pa) - 1:
                break
    else:
        pytest.skip("no two printable tokens in a row in this continuation")
    r, (got,) = gen_json(bundle, "--prompt", "the theme", "--max-new-tokens", "30",
                         "--stop", stop)
    assert got["finish_reason"] == "stop"
    assert got["text"] == text[:len(pa) - 1]
    assert len(got["ids"]) == k + 1
    plain = run(cli(bundle), "generate", "--prompt", "the theme", "--max-new-tokens", "30",
                "--stop", stop)
    assert plain.stdout == text[:len(pa) - 1] + "\n"


def test_bad_input_per_request(bundles):
    bundle = bundles["past"][0]
    lines = [json.dumps({"prompt": ""}),
             json.dumps({"prompt": "the " * 60}),
             json.dumps({"prompt": "the cat", "max_new_tokens": 10 ** 9}),
             json.dumps({"prompt": "the cat", "temperature": "NaN"}),
             "the cat"]
    r, res = gen_json(bundle, "--input", "-", "--max-new-tokens", "4",
                      input="\n".join(lines) + "\n")
    assert r.returncode == 3
    assert [x.get("code") for x in res] == ["empty-prompt", "prompt-too-long", "bad-request",
                                           "bad-request", None]
    assert "max_sequence_length" in res[1]["error"] and "65536" in res[2]["error"]
    assert len(res[4]["ids"]) == 4
    for flags in (["--max-new-tokens", "1000000000"], ["--temperature", "nan"],
                  ["--top-p", "2"]):
        r = run(cli(bundle), "generate", "--prompt", "x", *flags)
        assert r.returncode == 2 and "nexus_cli generate" in r.stderr, flags


def test_nan_logits_are_a_request_error(tmp_path, nexus):
    tj, _ = gen_models.bytelevel_tokenizer()
    z = json.loads(tj)["model"]["vocab"]["z"]
    root, out, _ = make(tmp_path, "nan", nan_id=z)
    r = build(nexus, root, out)
    assert r.returncode == 0, r.stderr
    r, res = gen_json(out, "--prompt", "zzz", "--prompt", "the cat", "--max-new-tokens", "3")
    assert r.returncode == 3
    assert res[0]["code"] == "non-finite-output" and len(res[1]["ids"]) == 3


def test_unknown_cache_layout_refused_at_build(tmp_path, nexus):
    root, out, _ = make(tmp_path, "bad", "badcache")
    r = build(nexus, root, out)
    assert r.returncode != 0
    assert "past.0" in r.stderr and "past_key_values.N.key" in r.stderr
    assert not out.exists()


def test_long_case_refuses_a_context_beyond_the_model(tmp_path, nexus):
    """max_sequence_length past the model's 64 positions: the selftest's long
    prompt fails in the model, and the build names the setting."""
    root, out, _ = make(tmp_path, "long", rt=runtime_yaml(max_len=100),
                        genconfig={"eos_token_id": 999999})
    r = build(nexus, root, out)
    assert r.returncode != 0 and not out.exists()
    assert "max_sequence_length 100 is more than the model takes" in r.stderr, r.stderr


def test_generation_config_and_runtime_defaults(tmp_path, nexus):
    tj, eos = gen_models.bytelevel_tokenizer()
    root, out, _ = make(tmp_path, "cfg", genconfig={"max_new_tokens": 5, "eos_token_id": [eos]},
                        rt=runtime_yaml(extra="generation:\n  max_new_tokens: 7\n"))
    assert build(nexus, root, out).returncode == 0
    assert (out / "config/generation_config.json").is_file()
    res = gen_json(out, "--prompt", "the cat")[1][0]
    assert len(res["ids"]) == 7 or res["finish_reason"] == "eos"
    res = gen_json(out, "--prompt", "the cat", "--max-new-tokens", "3")[1][0]
    assert len(res["ids"]) <= 3


def test_selftest_records_ids_and_mismatch_fails_functional(bundles, tmp_path, nexus):
    src = bundles["past"][0]
    golden = json.loads((src / "config/selftest.json").read_text())
    assert all(len(c["ids"]) == 8 for c in golden["cases"])
    # the long case: a prompt of the context (48) less the 8 new tokens
    assert len(golden["cases"]) == 3
    assert len(tokenize(src, golden["cases"][2]["text"])) == 40
    r = run(nexus, "verify", src)
    assert r.returncode == 0, r.stdout + r.stderr
    # liveness on a decoder: one pass over each text with an empty cache
    r = run(cli(src), "liveness")
    verdicts = [json.loads(x) for x in r.stdout.splitlines() if '"verdict"' in x]
    assert r.returncode == 0 and len(verdicts) > 10, r.stderr
    assert all(v["verdict"] in ("live", "dead-empty") for v in verdicts), verdicts
    # the same workspace, its recorded ids changed, rebuilt manifest: FAIL
    bad = tmp_path / "bad"
    shutil.copytree(src, bad, symlinks=True)
    golden["cases"][0]["ids"][3] = (golden["cases"][0]["ids"][3] + 1) % 200
    data = (json.dumps(golden, indent=2, sort_keys=True) + "\n").encode()
    (bad / "config/selftest.json").write_bytes(data)
    man = json.loads((bad / "manifest.json").read_text())
    for f in man["files"]:
        if f["path"] == "config/selftest.json":
            f.update(sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))
    (bad / "manifest.json").write_text(json.dumps(man, indent=2, sort_keys=True,
                                                  ensure_ascii=False) + "\n")
    r = run(bad / "bin/nexus_cli", "selftest")
    assert r.returncode == 1 and "generated ids differ" in r.stdout, r.stdout + r.stderr
    r = run(nexus, "verify", bad)
    assert r.returncode == 1 and "functional-selftest-failed" in r.stdout + r.stderr
