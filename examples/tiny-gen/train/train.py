#!/usr/bin/python3
"""train.py - trains the tiny-gen teacher and distils the student from it.

  /usr/bin/python3 train/train.py [--threads N] [--teacher-steps N] [--student-steps N]

Run from anywhere; writes into the workspace (this script's parent folder):
artifacts/{teacher,student}.onnx, artifacts/tokenizer/ (tokenizer.json,
tokenizer_config.json with the chat template, generation_config.json),
checkpoints/, artifacts/greedy_sample.jsonl, results.json.
Fixed seeds: the same torch build gives the same numbers."""
import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
WS = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(WS, "training"))

import corpus  # noqa: E402
from gpt import GPT, distill_loss  # noqa: E402

SEED = 1234
CTX = 64
VOCAB = 2048
EOT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
TEACHER = dict(vocab_size=VOCAB, d_model=96, n_layers=3, n_heads=4, d_ff=384, max_len=CTX)
STUDENT = dict(vocab_size=VOCAB, d_model=48, n_layers=2, n_heads=2, d_ff=192, max_len=CTX)
TEMPERATURE, ALPHA = 2.0, 0.7
BATCH = 16
# ChatML, as the SmolLM and Qwen families write it (a system turn first when given)
CHAT_TEMPLATE = (
    "{%- for message in messages %}\n"
    "{%- if loop.first and message['role'] != 'system' %}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{%- endif %}\n"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] | trim + '<|im_end|>\\n' }}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}\n")
NODE_PATH = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
                         "nexus", "node_modules")


def node(*args):
    env = dict(os.environ, NODE_PATH=NODE_PATH)
    subprocess.run(["node", os.path.join(HERE, "tokenizer.js"), *args], check=True, env=env)


def stream(lines, eot):
    out = []
    for ids in lines:
        out.extend(ids)
        out.append(eot)
    return torch.tensor(out, dtype=torch.long)


def batches(data, steps, gen):
    for _ in range(steps):
        starts = torch.randint(0, len(data) - CTX - 1, (BATCH,), generator=gen)
        x = torch.stack([data[s:s + CTX + 1] for s in starts.tolist()])
        yield x[:, :-1], x[:, 1:]


def lr_at(step, steps, peak):
    warm = max(1, steps // 20)
    if step < warm:
        return peak * (step + 1) / warm
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))


@torch.no_grad()
def perplexity(model, data, max_tokens=20000):
    model.eval()
    n = min(len(data) - 1, max_tokens) // CTX * CTX
    x = data[:n].view(-1, CTX)
    y = data[1:n + 1].view(-1, CTX)
    total = 0.0
    for i in range(0, len(x), 64):
        logits, _ = model(x[i:i + 64])
        total += torch.nn.functional.cross_entropy(
            logits.reshape(-1, VOCAB), y[i:i + 64].reshape(-1), reduction="sum").item()
    model.train()
    return math.exp(total / n)


def train_teacher(data, steps, log):
    torch.manual_seed(SEED)
    model = GPT(**TEACHER)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    gen = torch.Generator().manual_seed(SEED)
    t0 = time.time()
    for step, (x, y) in enumerate(batches(data, steps, gen)):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, 3e-3)
        logits, _ = model(x)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            log(f"teacher step {step} loss {loss.item():.3f}")
    return model, time.time() - t0


def distill_student(teacher, data, steps, log):
    torch.manual_seed(SEED + 1)
    model = GPT(**STUDENT)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    gen = torch.Generator().manual_seed(SEED + 1)
    teacher.eval()
    t0 = time.time()
    for step, (x, y) in enumerate(batches(data, steps, gen)):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, 3e-3)
        with torch.no_grad():
            soft, _ = teacher(x)
        logits, _ = model(x)
        loss, ce = distill_loss(logits, soft, y, TEMPERATURE, ALPHA)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            log(f"student step {step} loss {loss.item():.3f} ce {ce.item():.3f}")
    return model, opt, time.time() - t0


class WithPast(torch.nn.Module):
    """The Optimum text-generation-with-past signature around GPT."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.n = model.config["n_layers"]

    def forward(self, input_ids, attention_mask, position_ids, *past_flat):
        past = [(past_flat[2 * i], past_flat[2 * i + 1]) for i in range(self.n)]
        logits, present = self.model(input_ids, attention_mask, position_ids, past)
        return (logits, *[t for kv in present for t in kv])


def export(model, path):
    cfg = model.config
    n, h, hd = cfg["n_layers"], cfg["n_heads"], cfg["d_model"] // cfg["n_heads"]
    past_names = [f"past_key_values.{i}.{w}" for i in range(n) for w in ("key", "value")]
    present_names = [f"present.{i}.{w}" for i in range(n) for w in ("key", "value")]
    ids = torch.tensor([[5, 6, 7]])
    args = (ids, torch.ones(1, 5, dtype=torch.long), torch.tensor([[2, 3, 4]]),
            *[torch.zeros(1, h, 2, hd) for _ in past_names])
    axes = {"input_ids": {0: "batch_size", 1: "sequence_length"},
            "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
            "position_ids": {0: "batch_size", 1: "sequence_length"},
            "logits": {0: "batch_size", 1: "sequence_length"}}
    for name in past_names:
        axes[name] = {0: "batch_size", 2: "past_sequence_length"}
    for name in present_names:
        axes[name] = {0: "batch_size", 2: "total_sequence_length"}
    model.eval()
    torch.onnx.export(WithPast(model), args, path, opset_version=14,
                      input_names=["input_ids", "attention_mask", "position_ids", *past_names],
                      output_names=["logits", *present_names], dynamic_axes=axes,
                      do_constant_folding=True)


@torch.no_grad()
def greedy(model, ids, new):
    """Greedy continuation with the cache, checked against recomputing the prefix."""
    model.eval()
    x = torch.tensor([ids])
    logits, past = model(x)
    out = []
    for _ in range(new):
        nxt = int(logits[0, -1].argmax())
        out.append(nxt)
        full, _ = model(torch.tensor([ids + out]))
        logits, past = model(torch.tensor([[nxt]]), past=past)
        if not torch.allclose(full[0, -1], logits[0, -1], atol=1e-4):
            raise SystemExit("the cached step disagrees with the full recompute")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--teacher-steps", type=int, default=100)
    ap.add_argument("--student-steps", type=int, default=100)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    random.seed(SEED)
    art = os.path.join(WS, "artifacts")
    tokdir = os.path.join(art, "tokenizer")
    log = lambda s: print(s, flush=True)  # noqa: E731

    train_text, test_text, held = corpus.split(corpus.verses())
    with tempfile.TemporaryDirectory() as tmp:
        for name, lines in (("train", train_text), ("test", test_text)):
            with open(os.path.join(tmp, name + ".txt"), "w") as f:
                f.write("\n".join(lines) + "\n")
        node(os.path.join(tmp, "train.txt"), str(VOCAB), os.path.join(tokdir, "tokenizer.json"))
        for name in ("train", "test"):
            node("--encode", os.path.join(tokdir, "tokenizer.json"),
                 os.path.join(tmp, name + ".txt"), os.path.join(tmp, name + ".json"))
        with open(os.path.join(tmp, "train.json")) as f:
            train_ids = json.load(f)
        with open(os.path.join(tmp, "test.json")) as f:
            test_ids = json.load(f)
    tok = json.load(open(os.path.join(tokdir, "tokenizer.json")))
    special = {t["content"]: t["id"] for t in tok["added_tokens"]}
    eot = special[EOT]
    train_data, test_data = stream(train_ids, eot), stream(test_ids, eot)
    log(f"corpus: {len(train_data)} training tokens, {len(test_data)} held-out tokens")

    teacher, t_secs = train_teacher(train_data, a.teacher_steps, log)
    student, opt, s_secs = distill_student(teacher, train_data, a.student_steps, log)

    res = {"seed": SEED, "torch": torch.__version__, "context": CTX, "vocab_size": VOCAB,
           "data": {"source": "King James Bible, Debian bible-kjv-text (public domain)",
                    "held_out_books": held, "train_tokens": len(train_data),
                    "held_out_tokens": len(test_data)},
           "distillation": {"temperature": TEMPERATURE, "alpha": ALPHA, "batch": BATCH,
                            "sequence": CTX}}
    for name, model, steps, secs in (("teacher", teacher, a.teacher_steps, t_secs),
                                     ("student", student, a.student_steps, s_secs)):
        path = os.path.join(art, name + ".onnx")
        export(model, path)
        res[name] = {"config": model.config,
                     "parameters": sum(p.numel() for p in model.parameters()),
                     "steps": steps, "train_seconds": round(secs, 1),
                     "held_out_perplexity": round(perplexity(model, test_data), 2),
                     "train_perplexity": round(perplexity(model, train_data), 2),
                     "onnx_bytes": os.path.getsize(path)}
        log(f"{name}: {res[name]}")

    os.makedirs(os.path.join(WS, "checkpoints"), exist_ok=True)
    torch.save(teacher.state_dict(), os.path.join(WS, "checkpoints", "teacher.pt"))
    torch.save(student.state_dict(), os.path.join(WS, "checkpoints", "student.pt"))
    torch.save(opt.state_dict(), os.path.join(WS, "checkpoints", "optimizer.pt"))

    with open(os.path.join(tokdir, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": CTX,
                   "bos_token": None, "eos_token": EOT, "pad_token": EOT, "unk_token": None,
                   "clean_up_tokenization_spaces": False, "chat_template": CHAT_TEMPLATE},
                  f, indent=2)
        f.write("\n")
    # beside the tokenizer, where Hugging Face checkpoints keep it (nexus build
    # copies it into the bundle's config/)
    with open(os.path.join(tokdir, "generation_config.json"), "w") as f:
        json.dump({"eos_token_id": [eot, special[IM_END]], "pad_token_id": eot,
                   "max_new_tokens": 32, "do_sample": False, "temperature": 1.0,
                   "top_k": 50, "top_p": 1.0, "repetition_penalty": 1.0}, f, indent=2)
        f.write("\n")
    # greedy continuations of held-out prompts by the torch student (a
    # reference for the runtime's loop: same ids expected)
    with open(os.path.join(art, "greedy_sample.jsonl"), "w") as f:
        for ids in test_ids[:8]:
            prompt = ids[:8]
            f.write(json.dumps({"prompt_ids": prompt, "greedy_ids": greedy(student, prompt, 16)}) + "\n")
    with open(os.path.join(WS, "results.json"), "w") as f:
        json.dump(res, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
