"""examples/tiny-gen: the committed decoder example is what its README says
(Optimum with-past signature, chat template rendered as transformers does,
results with both perplexities), and, where the runtime has `generate`, its
bundle builds, verifies and continues held-out prompts with exactly the
greedy ids the torch student produced at training time."""
import json
import math
import pathlib

import onnx
import pytest

from conftest import ROOT, run
from test_chat_template import oracle

WS = ROOT / "examples" / "tiny-gen"


def test_student_has_the_with_past_signature():
    m = onnx.load(str(WS / "artifacts/student.onnx"), load_external_data=False)
    ins = [i.name for i in m.graph.input]
    outs = [o.name for o in m.graph.output]
    layers = json.loads((WS / "results.json").read_text())["student"]["config"]["n_layers"]
    past = [f"past_key_values.{i}.{w}" for i in range(layers) for w in ("key", "value")]
    assert ins == ["input_ids", "attention_mask", "position_ids", *past]
    assert outs == ["logits", *[p.replace("past_key_values", "present") for p in past]]


def test_results_report_both_perplexities():
    r = json.loads((WS / "results.json").read_text())
    for who in ("teacher", "student"):
        ppl = r[who]["held_out_perplexity"]
        assert math.isfinite(ppl) and 1 < ppl < r["vocab_size"], (who, ppl)
    assert r["student"]["parameters"] < r["teacher"]["parameters"]
    assert r["distillation"]["temperature"] > 1


def test_chat_template_renders_as_transformers(nexus_cli, tmp_path):
    cfg = json.loads((WS / "artifacts/tokenizer/tokenizer_config.json").read_text())
    messages = json.loads((WS / "chat_example.json").read_text())
    r = run(nexus_cli, "chat", "--tokenizer", WS / "artifacts/tokenizer",
            "--messages", WS / "chat_example.json")
    assert r.returncode == 0, r.stderr
    want = oracle(cfg["chat_template"], {"messages": messages, "eos_token": cfg["eos_token"]}, True)
    assert r.stdout == want


def has_generate(nexus_cli):
    return run(nexus_cli, "generate", "--help").returncode == 0


def test_bundle_generates_the_training_greedy_ids(nexus, nexus_cli, tmp_path):
    if not has_generate(nexus_cli):
        pytest.skip("this runtime has no `generate` verb (issue #18's generation runtime)")
    out = tmp_path / "b"
    r = run(nexus, "build", WS, "-o", out)
    assert r.returncode == 0, r.stderr
    cli = out / "bin/nexus_cli"
    eos = set(json.loads((WS / "artifacts/tokenizer/generation_config.json").read_text())["eos_token_id"])
    checked = 0
    for line in (WS / "artifacts/greedy_sample.jsonl").read_text().splitlines():
        sample = json.loads(line)
        text = run(cli, "detokenize", "--ids", json.dumps(sample["prompt_ids"])).stdout.rstrip("\n")
        if json.loads(run(cli, "tokenize", "--text", text).stdout) != sample["prompt_ids"]:
            continue  # the prompt's ids are not the canonical encoding of its text
        r = run(cli, "generate", "--prompt", text, "--json", "--greedy", "--max-new-tokens", "16")
        assert r.returncode == 0, r.stderr
        got = json.loads(r.stdout)["ids"]
        want = sample["greedy_ids"]
        cut = next((i for i, t in enumerate(want) if t in eos), len(want))
        assert got[:cut] == want[:cut], (text, got, want)
        checked += 1
    assert checked >= 4
