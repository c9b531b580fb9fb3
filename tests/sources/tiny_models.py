"""Tiny models for tests/sources/test_data_conventions.py, as factories (`tiny_models.py:encoder`)."""
from __future__ import annotations

import torch
from torch import nn


class TinyEncoder(nn.Module):
    """Token ids -> embedding -> mask-weighted mean -> L2 normalize (a sentence embedder's shape)."""

    def __init__(self, vocab=100, dim=16):
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(vocab, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, input_ids, attention_mask):
        h = torch.tanh(self.proj(self.emb(input_ids)))
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, dim=1)


class Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(4, 4)

    def forward(self, x, n: int):
        return self.lin(x) * n


class WithRate(nn.Module):
    """forward(x, sr: int) like Silero VAD's TorchScript file."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(8, 2)

    def forward(self, x, sr: int):
        y = self.lin(x)
        if sr == 16000:
            return torch.sigmoid(y)
        return torch.sigmoid(-y)


class TinyBert(nn.Module):
    """Skips the mask when every token is real (as transformers' attention does): tracing warns
    ("Converting a tensor to a Python boolean"), and both paths give the same answer."""

    def __init__(self, vocab=50, dim=16):
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(64, dim)
        self.attn = nn.MultiheadAttention(dim, 2, batch_first=True)

    def forward(self, input_ids, attention_mask):
        pos = torch.arange(input_ids.shape[1]).unsqueeze(0)
        h = self.emb(input_ids) + self.pos(pos)
        pad = None if bool((attention_mask == 1).all()) else attention_mask == 0
        out, _ = self.attn(h, h, h, key_padding_mask=pad, need_weights=False)
        if pad is not None:
            out = out.masked_fill(pad.unsqueeze(-1), 0.0)
        return out.mean(1)


class FixedLength(TinyBert):
    """The length goes through a Python int: the trace holds at the traced length only."""

    def forward(self, input_ids, attention_mask):
        n = int(input_ids.shape[1])
        h = self.emb(input_ids) + self.pos(torch.arange(n).unsqueeze(0)) * (n / 8.0)
        return h.mean(1) * attention_mask[:, :1]


def encoder():
    return TinyEncoder().eval()


def scaled():
    return Scaled().eval()


def bert():
    return TinyBert().eval()


def fixed_length():
    return FixedLength().eval()
