"""A small GPT for the toy lab, nanoGPT-like, with an explicit attention path.

Nothing fused: attention is written out so every forward can hand back what the study needs
(scores, probabilities, value states, residual states). ``attention="relu"`` replaces the
softmax with ``relu(scores) / n_visible`` (query ``t`` sees ``t + 1`` keys), the variant of
Guo et al. (2024) that has no sink because rows need not sum to one.

Shapes: B batch, T positions, C = dim, H heads, D = C // H.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Trace:
    """What one recorded forward saw. ``scores``/``probs``/``values`` have one entry per layer
    *with* attention, in ``attn_layers`` order (``no_attn`` layers have none).

    ``residuals`` has ``n_layers + 1`` entries: the embeddings, then the residual stream after
    each block (before the final LayerNorm).
    """

    attn_layers: list[int] = field(default_factory=list)  # layer index of each entry below
    scores: list[torch.Tensor] = field(default_factory=list)  # (B, H, T, T), masked = -inf
    probs: list[torch.Tensor] = field(default_factory=list)  # (B, H, T, T), masked = 0
    values: list[torch.Tensor] = field(default_factory=list)  # (B, H, T, D)
    residuals: list[torch.Tensor] = field(default_factory=list)  # (B, T, C)


def relu_attention(scores: torch.Tensor) -> torch.Tensor:
    """``relu(scores) / (t + 1)`` on the causal triangle, 0 above it. ``scores``: (..., T, T)."""
    t = scores.shape[-1]
    causal = torch.ones(t, t, dtype=torch.bool, device=scores.device).tril()
    n_visible = torch.arange(1, t + 1, device=scores.device, dtype=scores.dtype).unsqueeze(-1)
    return torch.relu(scores).masked_fill(~causal, 0.0) / n_visible


def softmax_attention(scores: torch.Tensor) -> torch.Tensor:
    """Causal softmax over keys. ``scores``: (..., T, T)."""
    t = scores.shape[-1]
    causal = torch.ones(t, t, dtype=torch.bool, device=scores.device).tril()
    return scores.masked_fill(~causal, float("-inf")).softmax(-1)


class Attention(nn.Module):
    def __init__(self, dim: int, n_heads: int, kind: str):
        super().__init__()
        self.n_heads, self.kind = n_heads, kind
        self.wq = nn.Linear(dim, dim, bias=False)
        self.wk = nn.Linear(dim, dim, bias=False)
        self.wv = nn.Linear(dim, dim, bias=False)
        self.wo = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor, trace: Trace | None = None) -> torch.Tensor:
        b, t, c = x.shape
        h, d = self.n_heads, c // self.n_heads
        q = self.wq(x).view(b, t, h, d).transpose(1, 2)  # (B, H, T, D)
        k = self.wk(x).view(b, t, h, d).transpose(1, 2)
        v = self.wv(x).view(b, t, h, d).transpose(1, 2)
        scores = q @ k.transpose(-2, -1) / math.sqrt(d)  # (B, H, T, T)
        probs = softmax_attention(scores) if self.kind == "softmax" else relu_attention(scores)
        y = (probs @ v).transpose(1, 2).reshape(b, t, c)  # (B, T, C)
        if trace is not None:
            causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
            trace.scores.append(scores.masked_fill(~causal, float("-inf")).detach())
            trace.probs.append(probs.detach())
            trace.values.append(v.detach())
        return self.wo(y)


class MLP(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.up = nn.Linear(dim, 4 * dim)
        self.down = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))


class Block(nn.Module):
    """Pre-LN block: ``x + attn(ln(x))`` then ``x + mlp(ln(x))``; either part can be absent."""

    def __init__(self, index: int, dim: int, n_heads: int, kind: str, attn: bool, mlp: bool,
                 layer_norm: bool):
        super().__init__()
        norm = (lambda: nn.LayerNorm(dim)) if layer_norm else nn.Identity
        self.index = index
        self.ln1, self.attn = (norm(), Attention(dim, n_heads, kind)) if attn else (None, None)
        self.ln2, self.mlp = (norm(), MLP(dim)) if mlp else (None, None)

    def forward(self, x: torch.Tensor, trace: Trace | None = None) -> torch.Tensor:
        if self.attn is not None:
            if trace is not None:
                trace.attn_layers.append(self.index)
            x = x + self.attn(self.ln1(x), trace)
        if self.mlp is not None:
            x = x + self.mlp(self.ln2(x))
        return x


class ToyTransformer(nn.Module):
    """Token + learned position embeddings, ``n_layers`` blocks, (LN), linear unembedding."""

    def __init__(self, *, vocab_size: int, seq_len: int, n_layers: int = 1, n_heads: int = 1,
                 dim: int = 256, mlp: bool = True, layer_norm: bool = True,
                 attention: str = "softmax", no_attn: frozenset[int] = frozenset(),
                 no_mlp: frozenset[int] = frozenset()):
        super().__init__()
        if attention not in ("softmax", "relu"):
            raise ValueError(f"attention must be 'softmax' or 'relu', got {attention!r}")
        self.tok = nn.Embedding(vocab_size, dim)
        self.pos = nn.Embedding(seq_len, dim)
        self.blocks = nn.ModuleList(
            Block(i, dim, n_heads, attention, i not in no_attn, mlp and i not in no_mlp, layer_norm)
            for i in range(n_layers)
        )
        self.ln_f = nn.LayerNorm(dim) if layer_norm else nn.Identity()
        self.head = nn.Linear(dim, vocab_size, bias=False)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        """GPT-2-style small normal init (std 0.02) for every linear and embedding weight."""
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    @classmethod
    def from_config(cls, config, vocab_size: int) -> ToyTransformer:
        from headsurgeon.toy.config import layer_set

        return cls(vocab_size=vocab_size, seq_len=config.seq_len, n_layers=config.n_layers,
                   n_heads=config.n_heads, dim=config.dim, mlp=config.mlp,
                   layer_norm=config.layer_norm, attention=config.attention,
                   no_attn=layer_set(config.no_attn), no_mlp=layer_set(config.no_mlp))

    def forward(self, idx: torch.Tensor, trace: Trace | None = None) -> torch.Tensor:
        """Next-token logits ``(B, T, vocab)`` for ``idx`` ``(B, T)``; fills ``trace`` if given."""
        positions = torch.arange(idx.shape[1], device=idx.device)
        x = self.tok(idx) + self.pos(positions)  # (B, T, C)
        if trace is not None:
            trace.residuals.append(x.detach())
        for block in self.blocks:
            x = block(x, trace)
            if trace is not None:
                trace.residuals.append(x.detach())
        return self.head(self.ln_f(x))

    def run_with_trace(self, idx: torch.Tensor) -> tuple[torch.Tensor, Trace]:
        trace = Trace()
        return self(idx, trace), trace
