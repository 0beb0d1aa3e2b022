"""Small GPT-2-like decoders and BPE tokenizers for the generation tests.

decoder_onnx(kind) exports one torch decoder (random weights, fixed seed)
with torch.onnx.export through a wrapper module in the layout the runtime
must drive:
    past      Optimum's text-generation-with-past: input_ids, attention_mask,
              position_ids, past_key_values.N.key/.value in; logits,
              present.N.key/.value out
    plain     input_ids, attention_mask -> logits (no cache)
    badcache  a cache in another layout (one "past.N" tensor per layer)
Tokenizers: a byte-level BPE (GPT-2's decoder) and a byte-fallback BPE
(TinyLlama's decoder), both small, so that a random model emits byte tokens
that split UTF-8 characters.
Runs under /usr/bin/python3 (torch, onnx).
"""
import io
import json
import math

import torch
from torch import nn

from tok_matrix import bytes_to_unicode

D, H, LAYERS, POSITIONS = 32, 2, 2, 64


def bytelevel_tokenizer():
    """(tokenizer.json text, eos id): 256 byte tokens, a few merges, <|endoftext|>."""
    b2u = bytes_to_unicode()
    vocab = {b2u[b]: b for b in range(256)}
    merges = ["Ġ t", "h e", "Ġt he", "i n", "a n", "Ġ a"]
    for m in merges:
        vocab.setdefault(m.replace(" ", ""), len(vocab))
    eos = len(vocab)
    j = {"version": "1.0", "truncation": None, "padding": None,
         "added_tokens": [{"id": eos, "content": "<|endoftext|>", "single_word": False,
                           "lstrip": False, "rstrip": False, "normalized": False,
                           "special": True}],
         "normalizer": None,
         "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                           "use_regex": True},
         "post_processor": None,
         "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                     "use_regex": True},
         "model": {"type": "BPE", "dropout": None, "unk_token": None,
                   "continuing_subword_prefix": "", "end_of_word_suffix": "",
                   "fuse_unk": False, "byte_fallback": False, "vocab": vocab,
                   "merges": merges}}
    return json.dumps(j, ensure_ascii=False), eos


def bytefallback_tokenizer():
    """(tokenizer.json text, eos id): <unk> <s> </s>, <0x00>..<0xFF>, letters."""
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    for t in ["▁"] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["▁t", "he", "▁the"]:
        vocab.setdefault(t, len(vocab))
    merges = ["▁ t", "h e", "▁t he"]
    j = {"version": "1.0", "truncation": None, "padding": None,
         "added_tokens": [{"id": i, "content": t, "single_word": False, "lstrip": False,
                           "rstrip": False, "normalized": False, "special": True}
                          for t, i in (("<unk>", 0), ("<s>", 1), ("</s>", 2))],
         "normalizer": {"type": "Sequence", "normalizers": [
             {"type": "Prepend", "prepend": "▁"},
             {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
         "pre_tokenizer": None, "post_processor": None,
         "decoder": {"type": "Sequence", "decoders": [
             {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
             {"type": "ByteFallback"}, {"type": "Fuse"},
             {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
         "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                   "continuing_subword_prefix": None, "end_of_word_suffix": None,
                   "fuse_unk": True, "byte_fallback": True, "vocab": vocab, "merges": merges}}
    return json.dumps(j, ensure_ascii=False), 2


class Block(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.d, self.h = d, h
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x, k_past, v_past, mask):
        b, t, _ = x.shape
        D, H = self.d, self.h
        q, k, v = self.qkv(self.ln1(x)).split(D, dim=2)
        q, k, v = (z.reshape(b, t, H, D // H).transpose(1, 2) for z in (q, k, v))
        if k_past is not None:
            k, v = torch.cat([k_past, k], dim=2), torch.cat([v_past, v], dim=2)
        s = k.shape[2]
        att = q @ k.transpose(2, 3) / math.sqrt(D // H)
        qpos = torch.arange(t).unsqueeze(1) + (s - t)
        causal = torch.arange(s).unsqueeze(0) <= qpos
        keep = causal.unsqueeze(0).unsqueeze(0) & (mask[:, None, None, :] > 0)
        att = att.masked_fill(~keep, -1e9).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, D)
        x = x + self.proj(y)
        x = x + self.fc2(torch.nn.functional.gelu(self.fc1(self.ln2(x))))
        return x, k, v


class TinyGPT(nn.Module):
    def __init__(self, vocab, d=D, h=H, layers=LAYERS, positions=POSITIONS):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(positions, d)
        self.blocks = nn.ModuleList(Block(d, h) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)

    def run(self, ids, mask, pos, past):
        x = self.wte(ids) + self.wpe(pos)
        presents = []
        for i, blk in enumerate(self.blocks):
            x, k, v = blk(x, *(past[2 * i:2 * i + 2] if past else (None, None)), mask)
            presents += [k, v]
        return self.head(self.ln_f(x)) * 3.0, presents


class WithPast(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, input_ids, attention_mask, position_ids, *past):
        logits, presents = self.m.run(input_ids, attention_mask, position_ids, list(past))
        return (logits, *presents)


class Plain(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, input_ids, attention_mask):
        pos = torch.arange(input_ids.shape[1]).unsqueeze(0)
        return self.m.run(input_ids, attention_mask, pos, None)[0]


class OtherCache(nn.Module):
    """A cache as one [2, batch, heads, past, head_dim] tensor per layer."""
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, input_ids, attention_mask, *past):
        flat = [z for p in past for z in (p[0], p[1])]
        pos = torch.arange(input_ids.shape[1]).unsqueeze(0) + past[0].shape[3]
        logits, presents = self.m.run(input_ids, attention_mask, pos, flat)
        return (logits, *[torch.stack(presents[i:i + 2]) for i in range(0, len(presents), 2)])


def decoder_onnx(vocab, kind="past", seed=0, nan_id=None, d=D, h=H, layers=LAYERS,
                 positions=POSITIONS):
    """The ONNX bytes of the decoder; nan_id: that token's embedding is NaN.
    d, h, layers, positions: its size (bench/run.py makes a 130M one)."""
    torch.manual_seed(seed)
    m = TinyGPT(vocab, d, h, layers, positions).eval()
    H, D, LAYERS = h, d, layers
    if nan_id is not None:
        with torch.no_grad():
            m.wte.weight[nan_id] = float("nan")
    ids = torch.tensor([[5, 6, 7]])
    mask = torch.ones(1, 6, dtype=torch.int64)
    kv = [torch.randn(1, H, 3, D // H) for _ in range(2 * LAYERS)]
    f = io.BytesIO()
    seq = {0: "batch", 1: "sequence"}
    if kind == "past":
        names = [f"past_key_values.{i}.{w}" for i in range(LAYERS) for w in ("key", "value")]
        outs = ["logits"] + [n.replace("past_key_values", "present") for n in names]
        dyn = {"input_ids": seq, "attention_mask": {0: "batch", 1: "total"},
               "position_ids": seq, "logits": seq}
        dyn.update({n: {0: "batch", 2: "past"} for n in names})
        dyn.update({n: {0: "batch", 2: "total"} for n in outs[1:]})
        torch.onnx.export(WithPast(m), (ids, mask, torch.tensor([[3, 4, 5]]), *kv), f,
                          input_names=["input_ids", "attention_mask", "position_ids"] + names,
                          output_names=outs, dynamic_axes=dyn, opset_version=14)
    elif kind == "plain":
        torch.onnx.export(Plain(m), (ids, torch.ones(1, 3, dtype=torch.int64)), f,
                          input_names=["input_ids", "attention_mask"], output_names=["logits"],
                          dynamic_axes={"input_ids": seq, "attention_mask": seq, "logits": seq},
                          opset_version=14)
    else:
        past = [torch.stack(kv[i:i + 2]) for i in range(0, len(kv), 2)]
        names = [f"past.{i}" for i in range(LAYERS)]
        torch.onnx.export(OtherCache(m), (ids, mask, *past), f,
                          input_names=["input_ids", "attention_mask"] + names,
                          output_names=["logits"] + [f"present.{i}" for i in range(LAYERS)],
                          dynamic_axes={"input_ids": seq, "attention_mask": {0: "batch", 1: "t"},
                                        **{n: {1: "batch", 3: "past"} for n in names}},
                          opset_version=14)
    return f.getvalue()


def script_ids(tok):
    """Ids that spell SCRIPT_TEXT in the tokenizer `tok`, multi-byte
    characters as one byte token each (so they split across tokens)."""
    if tok == "bytelevel":
        tj, _ = bytelevel_tokenizer()
        v = json.loads(tj)["model"]["vocab"]
        b2u = bytes_to_unicode()
        ids = []
        for word in SCRIPT_TEXT.split(" "):
            if ids:
                if word == "the":
                    ids.append(v["Ġthe"])
                    continue
                ids.append(v[b2u[32]])
            ids += [v[b2u[b]] for b in word.encode()]
        return ids
    tj, _ = bytefallback_tokenizer()
    v = json.loads(tj)["model"]["vocab"]
    ids = []
    for word in SCRIPT_TEXT.split(" "):
        if ids and word == "the":
            ids.append(v["▁the"])
            continue
        if ids:
            ids.append(v["▁"])
        for ch in word:
            ids += [v[ch]] if ch in v else [v["<0x%02X>" % b] for b in ch.encode()]
    return ids


SCRIPT_TEXT = "héllo 中文 the 😀 naïve the"


def script_onnx(vocab, plan):
    """A decoder that reads from a script: the logits at position t pick
    plan[t] (one-hot), whatever the ids; input_ids, attention_mask -> logits."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    table = np.full((POSITIONS, vocab), -4.0, dtype=np.float32)
    for t in range(POSITIONS):
        table[t, plan[t % len(plan)]] = 4.0
    nodes = [
        helper.make_node("Shape", ["input_ids"], ["shape"]),
        helper.make_node("Gather", ["shape", "one"], ["len"], axis=0),
        helper.make_node("Range", ["zero", "len", "one"], ["pos"]),
        helper.make_node("Gather", ["table", "pos"], ["rows"], axis=0),
        helper.make_node("Unsqueeze", ["rows", "axes0"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "scripted",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", vocab])],
        [numpy_helper.from_array(table, "table"),
         numpy_helper.from_array(np.array(0, dtype=np.int64), "zero"),
         numpy_helper.from_array(np.array(1, dtype=np.int64), "one"),
         numpy_helper.from_array(np.array([0], dtype=np.int64), "axes0")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="pytorch")
    model.ir_version = 7
    return model.SerializeToString()


def merged_onnx(vocab, seed=0):
    """Optimum's merged decoder: the with-past graph twice under an If on
    use_cache_branch (bool [1]); here both branches compute the same (the
    one without cache gets an empty cache), names prefixed per branch."""
    import copy
    import onnx
    from onnx import TensorProto, helper
    m = onnx.load_from_string(decoder_onnx(vocab, "past", seed=seed))
    g = m.graph
    outer = {i.name for i in g.input}

    def branch(prefix):
        sub = copy.deepcopy(g)
        ren = lambda n: n if (n in outer or n == "") else prefix + n  # noqa: E731
        for node in sub.node:
            node.input[:] = [ren(x) for x in node.input]
            node.output[:] = [ren(x) for x in node.output]
            node.name = prefix + node.name
        for t in sub.initializer:
            t.name = ren(t.name)
        for v in list(sub.output) + list(sub.value_info):
            v.name = ren(v.name)
        del sub.input[:]
        sub.name = prefix + "graph"
        return sub

    cond = helper.make_tensor_value_info("use_cache_branch", TensorProto.BOOL, [1])
    node = helper.make_node("If", ["use_cache_branch"], [o.name for o in g.output],
                            then_branch=branch("with_past_"), else_branch=branch("no_past_"))
    graph = helper.make_graph([node], "merged", list(g.input) + [cond], list(g.output))
    merged = helper.make_model(graph, opset_imports=m.opset_import, producer_name="pytorch")
    merged.ir_version = m.ir_version
    return merged.SerializeToString()
