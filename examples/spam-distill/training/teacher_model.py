"""Transformer encoder classifier for the spam example.

One class serves both model sizes: the large reference classifier (4 layers,
d_model 128) and the small production classifier (2 layers, d_model 64) differ
only in their EncoderConfig. The code is written with plain matmuls instead of
nn.TransformerEncoder so that torch.onnx.export (torch 1.13) produces a plain
graph of MatMul/Softmax/LayerNormalization ops with dynamic batch and sequence
axes, which any ONNX Runtime build can run.

Speed: Debian's python3-torch links the reference (netlib) BLAS, which runs
matmuls at ~2-3 GFLOP/s, while its convolutions go through oneDNN at ~50.
Outside of tracing, linear layers and both attention products are therefore
computed as 1x1 convolutions (the attention ones grouped per sequence and
head). The arithmetic is the same; the traced/exported graph uses the plain
MatMul path (see `_fast`), so the ONNX file is an ordinary transformer.
"""
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class EncoderConfig:
    vocab_size: int
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    d_ff: int = 512
    max_len: int = 128
    n_labels: int = 2
    dropout: float = 0.1

    def to_dict(self):
        return asdict(self)


def _fast(module):
    return module.fast and not torch.jit.is_tracing()


def linear(layer, x, fast):
    """nn.Linear on [b, s, in]; as a 1x1 convolution when `fast`."""
    if not fast:
        return layer(x)
    y = F.conv1d(x.transpose(1, 2), layer.weight.unsqueeze(-1), layer.bias)
    return y.transpose(1, 2)


def attention(q, k, v, bias, d_head, fast):
    """softmax(q k^T / sqrt(d) + bias) v for q, k, v of shape [b, h, s, d].

    No dropout on the attention probabilities: sampling its mask was 13% of a
    training step here."""
    # d_head is passed as a Python int so the traced graph gets a constant scale.
    scale = 1.0 / math.sqrt(d_head)
    if not fast:
        att = torch.matmul(q, k.transpose(-1, -2)) * scale + bias
        return torch.matmul(F.softmax(att, dim=-1), v)
    b, h, s, d = q.shape
    g = b * h  # one convolution group per (sequence, head)
    qi = q.permute(0, 1, 3, 2).reshape(1, g * d, s)
    sc = F.conv1d(qi, k.reshape(g * s, d, 1), groups=g).reshape(b, h, s, s)
    att = sc.transpose(-1, -2) * scale + bias
    ai = F.softmax(att, dim=-1).transpose(-1, -2).reshape(1, g * s, s)
    vw = v.permute(0, 1, 3, 2).reshape(g * d, s, 1)
    return F.conv1d(ai, vw, groups=g).reshape(b, h, d, s).transpose(-1, -2)


class Block(nn.Module):
    """Pre-LayerNorm block: trains stably at a fixed learning rate without warm-up."""

    def __init__(self, cfg):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.d_head = cfg.d_model // cfg.n_heads
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.ff1 = nn.Linear(cfg.d_model, cfg.d_ff)
        self.ff2 = nn.Linear(cfg.d_ff, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.fast = True

    def forward(self, x, bias):
        fast = _fast(self)
        b, s, d = x.size(0), x.size(1), x.size(2)
        q, k, v = linear(self.qkv, self.ln1(x), fast).chunk(3, dim=-1)
        # [b, s, d] -> [b, heads, s, d_head]
        q = q.reshape(b, s, self.n_heads, self.d_head).transpose(1, 2)
        k = k.reshape(b, s, self.n_heads, self.d_head).transpose(1, 2)
        v = v.reshape(b, s, self.n_heads, self.d_head).transpose(1, 2)
        y = attention(q, k, v, bias, self.d_head, fast).transpose(1, 2).reshape(b, s, d)
        x = x + self.drop(linear(self.proj, y, fast))
        h = F.gelu(linear(self.ff1, self.ln2(x), fast))
        return x + self.drop(linear(self.ff2, h, fast))


class TransformerClassifier(nn.Module):
    """input_ids, attention_mask (int64 [batch, seq]) -> logits (float [batch, n_labels])."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model, padding_idx=0)
        self.pos = nn.Embedding(cfg.max_len, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layers)])
        self.ln = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.n_labels)

    def forward(self, input_ids, attention_mask):
        s = input_ids.size(1)
        # Slicing the position table (not torch.arange) keeps the sequence axis
        # dynamic in the traced ONNX graph.
        x = self.drop(self.tok(input_ids) + self.pos.weight[:s].unsqueeze(0))
        m = attention_mask.to(x.dtype)
        # Additive mask: padded keys get -1e4 before the softmax (as BERT does).
        bias = ((1.0 - m) * -10000.0).unsqueeze(1).unsqueeze(2)
        for blk in self.blocks:
            x = blk(x, bias)
        x = self.ln(x)
        # Masked mean pooling: padding never changes a sequence's logits.
        pooled = (x * m.unsqueeze(-1)).sum(1) / m.sum(1, keepdim=True).clamp(min=1.0)
        return self.head(pooled)


def set_fast(model, fast):
    """Select the convolution (training) or plain matmul (reference) code path."""
    for m in model.modules():
        if isinstance(m, Block):
            m.fast = fast


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())
