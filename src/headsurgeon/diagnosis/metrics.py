"""Per-head attention statistics: per-row values of one layer averaged over query positions.

Definitions (``SCIENCE.md`` part A), for a prompt of T tokens and attention ``A`` (rows = queries):

* BOS mass: mean over query positions of ``A[t, 0]``;
* entropy: mean over query positions of ``-sum_j A[t, j] log A[t, j]`` (nats);
* local mass: mean over query positions of ``A[t, t-2] + A[t, t-1] + A[t, t]``.

Query position 0 can only attend to itself (``A[0, 0] = 1``), which inflates BOS mass by about
1/T and deflates entropy; by default it is left out of every mean (``include_first_query``
puts it back, as the paper did). Padded query positions are always left out.

The per-row values come from the measurement engine (:mod:`headsurgeon.capture.engine`, no map
held); :func:`head_stats` computes the same from full maps, as the reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from headsurgeon.capture import AttentionBatch, LayerStats, RowStats, rows_from_maps

METRICS = ("bos_mass", "entropy", "local_mass")


@dataclass
class HeadStats:
    """``[batch, heads]`` statistics for one layer."""

    bos_mass: torch.Tensor
    entropy: torch.Tensor
    local_mass: torch.Tensor


def query_mask(batch: AttentionBatch | LayerStats, include_first_query: bool) -> torch.Tensor:
    mask = batch.valid_queries()
    if not include_first_query:
        mask = mask.clone()
        mask[:, 0] = False
    return mask


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values [B, H, T]`` over positions where ``mask [B, T]`` holds."""
    m = mask[:, None, :].expand_as(values)
    total = torch.where(m, values, torch.zeros((), dtype=values.dtype, device=values.device)).sum(-1)
    return total / m.sum(-1).clamp_min(1).to(values.dtype)  # where(), not *: padded rows may hold NaN


def reduce_rows(rows: RowStats, mask: torch.Tensor) -> HeadStats:
    """``[B, H]`` statistics: per-row values averaged over the query positions in ``mask [B, T]``."""
    return HeadStats(
        bos_mass=_masked_mean(rows.bos, mask),
        entropy=_masked_mean(rows.entropy, mask),
        local_mass=_masked_mean(rows.local, mask),
    )


def layer_head_stats(layer: LayerStats, *, include_first_query: bool = False) -> HeadStats:
    """Reduce one layer's per-row statistics from the engine to per-head statistics."""
    return reduce_rows(layer.rows, query_mask(layer, include_first_query))


def head_stats(batch: AttentionBatch, *, include_first_query: bool = False) -> HeadStats:
    """The same from one layer's full maps (the eager reference)."""
    return reduce_rows(rows_from_maps(batch.weights), query_mask(batch, include_first_query))
