"""Per-head attention statistics, reduced from one layer's maps at a time.

Definitions (``SCIENCE.md`` part A), for a prompt of T tokens and attention ``A`` (rows = queries):

* BOS mass: mean over query positions of ``A[t, 0]``;
* entropy: mean over query positions of ``-sum_j A[t, j] log A[t, j]`` (nats);
* local mass: mean over query positions of ``A[t, t-2] + A[t, t-1] + A[t, t]``.

Query position 0 can only attend to itself (``A[0, 0] = 1``), which inflates BOS mass by about
1/T and deflates entropy; by default it is left out of every mean (``include_first_query``
puts it back, as the paper did). Padded query positions are always left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from headsurgeon.capture import AttentionBatch

METRICS = ("bos_mass", "entropy", "local_mass")


@dataclass
class HeadStats:
    """``[batch, heads]`` statistics for one layer."""

    bos_mass: torch.Tensor
    entropy: torch.Tensor
    local_mass: torch.Tensor


def query_mask(batch: AttentionBatch, include_first_query: bool) -> torch.Tensor:
    mask = batch.valid_queries()
    if not include_first_query:
        mask = mask.clone()
        mask[:, 0] = False
    return mask


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values [B, H, T]`` over positions where ``mask [B, T]`` holds."""
    m = mask[:, None, :].to(values.dtype)
    return (values * m).sum(-1) / m.sum(-1).clamp_min(1)


def local_band(weights: torch.Tensor, width: int = 3) -> torch.Tensor:
    """``[B, H, T]``: attention each query puts on its last ``width`` keys (itself included)."""
    T = weights.shape[-1]
    total = torch.zeros(weights.shape[:-1], dtype=weights.dtype, device=weights.device)
    for k in range(min(width, T)):
        diag = weights.diagonal(offset=-k, dim1=-2, dim2=-1)  # A[t, t-k] for t = k..T-1
        total[..., k:] += diag
    return total


def head_stats(batch: AttentionBatch, *, include_first_query: bool = False) -> HeadStats:
    """Reduce one layer's maps to per-head statistics (one pass, no map kept)."""
    w = batch.weights
    mask = query_mask(batch, include_first_query)
    entropy_rows = -torch.special.xlogy(w, w).sum(-1)
    return HeadStats(
        bos_mass=_masked_mean(w[..., 0], mask),
        entropy=_masked_mean(entropy_rows, mask),
        local_mass=_masked_mean(local_band(w), mask),
    )
