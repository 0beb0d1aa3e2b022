"""gpt.py - the decoder used for both teacher and student: pre-norm GPT
blocks, learned positions, tied input/output embeddings.

Attention is written out (no fused kernel) so that the ONNX export is
plain MatMul/Softmax and takes a key/value cache: forward() returns the
keys and values of this call appended to `past`."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, d, heads, ff):
        super().__init__()
        self.heads, self.hd = heads, d // heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ff1, self.ff2 = nn.Linear(d, ff), nn.Linear(ff, d)

    def forward(self, x, bias, past_k=None, past_v=None):
        b, s, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (t.view(b, s, self.heads, self.hd).transpose(1, 2) for t in (q, k, v))
        if past_k is not None:
            k = torch.cat([past_k, k], dim=2)
            v = torch.cat([past_v, v], dim=2)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd) + bias
        y = (F.softmax(att, dim=-1) @ v).transpose(1, 2).reshape(b, s, d)
        x = x + self.proj(y)
        x = x + self.ff2(F.gelu(self.ff1(self.ln2(x))))
        return x, k, v


class GPT(nn.Module):
    def __init__(self, vocab_size, d_model, n_layers, n_heads, d_ff, max_len):
        super().__init__()
        self.config = dict(vocab_size=vocab_size, d_model=d_model, n_layers=n_layers,
                           n_heads=n_heads, d_ff=d_ff, max_len=max_len)
        self.tok = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, d_ff) for _ in range(n_layers))
        self.ln = nn.LayerNorm(d_model)
        nn.init.normal_(self.tok.weight, std=0.02)
        nn.init.normal_(self.pos.weight, std=0.01)

    def forward(self, input_ids, attention_mask=None, position_ids=None, past=None):
        """input_ids [B,S]; attention_mask [B,P+S] (1 = attend); position_ids
        [B,S]; past: per layer (key, value) [B,H,P,hd].  Returns logits
        [B,S,V] and the per-layer (key, value) [B,H,P+S,hd]."""
        b, s = input_ids.shape
        p = past[0][0].shape[2] if past is not None else 0
        if position_ids is None:
            position_ids = torch.arange(p, p + s, device=input_ids.device).expand(b, s)
        if attention_mask is None:
            attention_mask = torch.ones(b, p + s, dtype=torch.long, device=input_ids.device)
        # query i sits at p+i and may see keys 0..p+i that the mask keeps
        qpos = torch.arange(s, device=input_ids.device).unsqueeze(1) + p
        kpos = torch.arange(p + s, device=input_ids.device).unsqueeze(0)
        allowed = (kpos <= qpos).unsqueeze(0).unsqueeze(0) & \
            attention_mask.bool().unsqueeze(1).unsqueeze(2)
        bias = torch.zeros(allowed.shape, dtype=torch.float32, device=input_ids.device)
        bias = bias.masked_fill(~allowed, torch.finfo(torch.float32).min)
        x = self.tok(input_ids) + self.pos(position_ids)
        present = []
        for i, blk in enumerate(self.blocks):
            pk, pv = past[i] if past is not None else (None, None)
            x, k, v = blk(x, bias, pk, pv)
            present.append((k, v))
        return self.ln(x) @ self.tok.weight.t(), present


def distill_loss(student_logits, teacher_logits, targets, temperature, alpha):
    """alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(targets),
    over every position (Hinton et al.'s soft targets)."""
    v = student_logits.shape[-1]
    s = student_logits.reshape(-1, v)
    t = teacher_logits.reshape(-1, v)
    kl = F.kl_div(F.log_softmax(s / temperature, dim=-1), F.log_softmax(t / temperature, dim=-1),
                  reduction="batchmean", log_target=True)
    ce = F.cross_entropy(s, targets.reshape(-1))
    return alpha * temperature * temperature * kl + (1 - alpha) * ce, ce
