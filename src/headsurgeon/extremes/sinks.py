"""Which key positions are attention sinks: pure reductions of attention maps.

For one head and a prompt of T tokens with attention ``A`` (rows = queries), the attention a key
position j *receives* is summed over the queries that exist (t < T) and are not query 0 (which
can only see itself, so ``A[0, 0] = 1`` always — the same exclusion as the diagnosis):

* ``received[j] = sum_{t >= max(j, 1)} A[t, j]``
* ``visible[j]  = #{t : max(j, 1) <= t < T}`` (how many of those queries can see j)
* mean received attention ``received[j] / visible[j]``; j is a sink of the head when this exceeds
  the sink threshold and ``visible[j]`` is large enough to mean something.

``received`` is what the forward pass keeps (``[heads, T]`` per layer and prompt, never a map).
It also gives exact per-head shares: attention on position 0 averaged over the queries is
``received[0] / n_queries`` (the diagnosis's BOS mass), and attention on a set S of positions is
``sum_{j in S} received[j] / n_queries`` (a query that cannot see j contributes 0 for it).
"""

from __future__ import annotations

import math

import numpy as np
import torch


def received_attention(weights: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``[B, H, T]``: attention each key receives, summed over real queries ``t >= 1``.

    ``weights`` is ``[B, H, T, T]`` (rows = queries) of a right-padded batch with real lengths
    ``lengths``; padded queries and query 0 are left out.
    """
    T = weights.shape[-1]
    t = torch.arange(T, device=weights.device)
    queries = (t[None, :] < lengths[:, None].to(t.device)) & (t[None, :] >= 1)  # [B, T]
    return (weights * queries[:, None, :, None].to(weights.dtype)).sum(-2)


def visible_queries(length: int) -> np.ndarray:
    """``[length]``: how many counted queries (``1 <= t < length``) can see each key position."""
    j = np.arange(length)
    return (length - np.maximum(j, 1)).astype(float)


def mean_received(received: np.ndarray, length: int) -> np.ndarray:
    """Mean attention received per key (``received[..., :length] / visible``); 0 where unseen."""
    vis = visible_queries(length)
    out = received[..., :length] / np.maximum(vis, 1)
    return np.where(vis > 0, out, 0.0)


def head_sink_mask(received: np.ndarray, length: int, *, threshold: float, min_visible: int) -> np.ndarray:
    """``[..., length]`` bool: key positions that are sinks of each head (see module doc)."""
    vis = visible_queries(length)
    return (mean_received(received, length) > threshold) & (vis >= min_visible)


def sink_tokens(head_sinks: np.ndarray, *, head_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """The prompt's sink tokens from ``head_sinks [layers, heads, T]``.

    Returns ``(positions, counts)``: positions where at least ``head_fraction`` of all heads
    (and at least one) sink, and ``counts [T]``, how many heads sink on each position.
    """
    counts = head_sinks.reshape(-1, head_sinks.shape[-1]).sum(0)
    needed = max(1, math.ceil(head_fraction * head_sinks.shape[0] * head_sinks.shape[1]))
    return np.nonzero(counts >= needed)[0], counts


def share_on(received: np.ndarray, positions, length: int) -> np.ndarray:
    """Mean over counted queries of the attention on ``positions`` (``[..., T] -> [...]``)."""
    n_queries = max(length - 1, 1)
    pos = np.asarray(list(positions), dtype=int)
    if pos.size == 0:
        return np.zeros(received.shape[:-1])
    return received[..., pos].sum(-1) / n_queries
