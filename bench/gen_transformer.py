#!/usr/bin/python3
"""Real-sized BERT-family students for the runtime benchmarks, built with
torch (random weights; the shapes are what costs time):

    gen_transformer.py OUT.onnx distilbert   # 67.0M: DistilBERT-base + 2-class head, logits
    gen_transformer.py OUT.onnx minilm       # 22.6M: all-MiniLM-L6-v2 shape, last_hidden_state
    gen_transformer.py OUT.onnx tiny-distilbert|tiny-minilm   # the same graphs, 32 wide (tests)

Both take input_ids and attention_mask ([batch, seq], int64; MiniLM also
token_type_ids), have 512 learned positions and a 30522-row vocabulary.
Written by hand (no `transformers` on Debian 12): post-norm encoder layers,
GELU feed-forward, additive attention mask, as BERT does.
"""
import math
import sys

import torch
from torch import nn

SHAPES = {
    # dim, layers, heads, ffn, token types, head
    "distilbert": (768, 6, 12, 3072, 0, "classifier"),
    "minilm": (384, 6, 12, 1536, 2, "hidden"),
    # the same graphs, small enough for the test suite
    "tiny-distilbert": (32, 2, 4, 64, 0, "classifier"),
    "tiny-minilm": (32, 2, 4, 64, 2, "hidden"),
}
VOCAB, POSITIONS = 30522, 512


class Layer(nn.Module):
    def __init__(self, dim, heads, ffn):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.ln1, self.ln2 = nn.LayerNorm(dim, eps=1e-12), nn.LayerNorm(dim, eps=1e-12)
        self.ff1, self.ff2 = nn.Linear(dim, ffn), nn.Linear(ffn, dim)

    def forward(self, x, bias):
        b, l, d = x.shape
        h = self.heads

        def split(t):
            return t.view(b, l, h, d // h).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // h) + bias, dim=-1)
        ctx = (att @ v).transpose(1, 2).reshape(b, l, d)
        x = self.ln1(x + self.o(ctx))
        return self.ln2(x + self.ff2(nn.functional.gelu(self.ff1(x))))


class Encoder(nn.Module):
    def __init__(self, dim, layers, heads, ffn, types, head):
        super().__init__()
        self.word = nn.Embedding(VOCAB, dim)
        self.pos = nn.Embedding(POSITIONS, dim)
        self.types = nn.Embedding(types, dim) if types else None
        self.ln = nn.LayerNorm(dim, eps=1e-12)
        self.layers = nn.ModuleList(Layer(dim, heads, ffn) for _ in range(layers))
        self.head = head
        if head == "classifier":
            self.pre = nn.Linear(dim, dim)
            self.cls = nn.Linear(dim, 2)

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        pos = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        x = self.word(input_ids) + self.pos(pos)
        if self.types is not None:
            x = x + self.types(token_type_ids)
        x = self.ln(x)
        bias = (1.0 - attention_mask[:, None, None, :].float()) * -10000.0
        for layer in self.layers:
            x = layer(x, bias)
        if self.head == "classifier":
            return self.cls(torch.relu(self.pre(x[:, 0])))
        return x


def main():
    out, shape = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    dim, layers, heads, ffn, types, head = SHAPES[shape]
    model = Encoder(dim, layers, heads, ffn, types, head).eval()
    for p in model.parameters():  # BERT's init scale: activations stay sane
        nn.init.normal_(p, std=0.02) if p.dim() > 1 else nn.init.zeros_(p)
    for m in model.modules():
        if isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
    params = sum(p.numel() for p in model.parameters())
    ids = torch.randint(5, 1000, (2, 16))
    mask = torch.ones_like(ids)
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if types else [])
    args = (ids, mask) + ((torch.zeros_like(ids),) if types else ())
    oname = "logits" if head == "classifier" else "last_hidden_state"
    axes = {n: {0: "batch", 1: "seq"} for n in names}
    axes[oname] = {0: "batch"} if head == "classifier" else {0: "batch", 1: "seq"}
    with torch.no_grad():
        torch.onnx.export(model, args, out, input_names=names, output_names=[oname],
                          dynamic_axes=axes, opset_version=14, do_constant_folding=True)
    print(f"{shape}: {params / 1e6:.1f}M parameters -> {out}")


if __name__ == "__main__":
    main()
