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

Family specifics (declared by the adapter):

* sliding-window layers: a query at ``t >= window`` cannot see position 0, so BOS mass is the
  mean over the rows that can (``1 <= t < window``); entropy and local mass use every row, and
  ``bos_rows`` says how many rows the BOS mean counted;
* a learned sink (gpt-oss): BOS and local mass are the weights the model gives to real keys;
  ``sink_mass`` is the mean share the sink takes; entropy is that of the full distribution the
  softmax computes, the sink counted as one more outcome (``RowStats.sink``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from headsurgeon.capture import AttentionBatch, LayerStats, RowStats, rows_from_maps

METRICS = ("bos_mass", "entropy", "local_mass")
#: Reported only for families with a learned sink (gpt-oss).
SINK_METRIC = "sink_mass"


@dataclass
class HeadStats:
    """``[batch, heads]`` statistics for one layer."""

    bos_mass: torch.Tensor
    entropy: torch.Tensor
    local_mass: torch.Tensor
    #: ``[batch]`` query rows counted in the BOS means (fewer than the others on windowed layers).
    bos_rows: torch.Tensor | None = None
    sink_mass: torch.Tensor | None = None


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


def bos_visible(T: int, window: int | None, device=None) -> torch.Tensor:
    """``[T]`` boolean: which query positions can see position 0 (``t < window``; all if global)."""
    t = torch.arange(T, device=device)
    return t < window if window is not None else torch.ones(T, dtype=torch.bool, device=device)


def reduce_rows(rows: RowStats, mask: torch.Tensor, window: int | None = None) -> HeadStats:
    """``[B, H]`` statistics: per-row values averaged over the query positions in ``mask [B, T]``;
    BOS mass only over the rows of those that can see position 0 (``window``)."""
    bos_mask = mask & bos_visible(mask.shape[-1], window, mask.device)[None, :]
    return HeadStats(
        bos_mass=_masked_mean(rows.bos, bos_mask),
        entropy=_masked_mean(rows.entropy, mask),
        local_mass=_masked_mean(rows.local, mask),
        bos_rows=bos_mask.sum(-1),
        sink_mass=None if rows.sink is None else _masked_mean(rows.sink, mask),
    )


def layer_head_stats(layer: LayerStats, *, include_first_query: bool = False, window: int | None = None) -> HeadStats:
    """Reduce one layer's per-row statistics from the engine to per-head statistics
    (``window``: the layer's sliding window, from its adapter)."""
    return reduce_rows(layer.rows, query_mask(layer, include_first_query), window)


def head_stats(batch: AttentionBatch, *, include_first_query: bool = False) -> HeadStats:
    """The same from one layer's full maps (the eager reference; window and sink from the batch)."""
    return reduce_rows(rows_from_maps(batch.weights, sink=batch.sink), query_mask(batch, include_first_query), batch.window)
