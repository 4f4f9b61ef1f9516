"""Checks on every layer's statistics: in range, finite, and equal to an eager recomputation.

A fused kernel gives numbers, not maps, so the old row-sum and causality checks on maps become:

* **range**: on every real query row, BOS weight and local mass lie in [0, 1] and the entropy in
  [0, log(number of keys the row can see)], all finite (NaN or inf is usually an fp16 overflow);
* **spot check**: a few query rows per layer, drawn with a seeded generator, are recomputed from
  explicit scores (:func:`~headsurgeon.capture.rowstats.chunked_row_stats` on those rows only,
  float32) and must agree with the fused numbers. A kernel that returned something other than
  the log-sum-exp of these scores, a wrong scale, or a mask mix-up fails this.

Tolerances follow the dtype the model runs in: float32 kernels agree with the float32 reference
to ~1e-6; half-precision kernels see rounded queries and keys and round their outputs, so they get
room in proportion to their precision.
"""

from __future__ import annotations

import math

import torch

from headsurgeon.errors import CaptureError
from headsurgeon.precision import probability_tolerance

from .rowstats import RowStats, chunked_row_stats


def tolerance(dtype: torch.dtype) -> float:
    """Allowed disagreement of a probability in ``dtype`` (:mod:`headsurgeon.precision`)."""
    return probability_tolerance(str(dtype))


def check_row_stats(layer: int, rows: RowStats, lengths: torch.Tensor, dtype: torch.dtype = torch.float32) -> None:
    """Raise :class:`CaptureError` unless every real row's statistics are finite and in range."""
    T = rows.bos.shape[-1]
    t = torch.arange(T, device=rows.bos.device)
    valid = (t[None, :] < lengths.to(t.device)[:, None])[:, None, :]  # [B, 1, T]
    tol = tolerance(dtype)
    parts = {"BOS weight": rows.bos, "entropy": rows.entropy, "local mass": rows.local}
    for name, x in parts.items():
        if not torch.isfinite(x.masked_select(valid.expand_as(x))).all():
            raise CaptureError(f"layer {layer}: the {name} of some query rows is NaN or inf; run in float32")
    for name in ("BOS weight", "local mass"):
        x = parts[name].masked_fill(~valid, 0.5)
        if x.min() < -tol or x.max() > 1 + tol:
            raise CaptureError(f"layer {layer}: {name} outside [0, 1] ({x.min().item():.3g} .. {x.max().item():.3g}); the backend is not returning probabilities")
    if rows.sink is not None:  # a learned sink's share: a probability too, and one more outcome
        x = rows.sink.masked_fill(~valid, 0.5)
        if x.min() < -tol or x.max() > 1 + tol:
            raise CaptureError(f"layer {layer}: sink share outside [0, 1]; the backend is not returning probabilities")
    most = torch.log(t.float() + (1 if rows.sink is None else 2))  # row t sees at most t + 1 keys (+ the sink)
    excess = (rows.entropy - most).masked_fill(~valid, 0).max()
    low = rows.entropy.masked_fill(~valid, 0).min()
    if excess > 4 * tol or low < -4 * tol:
        raise CaptureError(f"layer {layer}: entropy outside [0, log(keys)] (by {max(excess.item(), -low.item()):.3g} nats); the backend is not returning probabilities")


def spot_check(
    layer: int,
    rows: RowStats,
    lengths: torch.Tensor,
    query: torch.Tensor,
    key: torch.Tensor,
    scale: float,
    mask: torch.Tensor | None,
    *,
    rows_per_batch: int,
    generator: torch.Generator,
) -> None:
    """Recompute ``rows_per_batch`` random real query rows from explicit scores and compare."""
    if rows_per_batch <= 0:
        return
    tol = tolerance(query.dtype)
    B = query.shape[0]
    picks = torch.randint(0, B, (rows_per_batch,), generator=generator).tolist()
    for b in picks:
        n = int(lengths[b])
        t = int(torch.randint(0, max(n, 1), (1,), generator=generator))
        m = None if mask is None else mask[b : b + 1] if mask.shape[0] > 1 else mask
        ref = chunked_row_stats(query[b : b + 1], key[b : b + 1], scale=scale, mask=m, rows=torch.tensor([t]))
        for name, got, want, room in (
            ("BOS weight", rows.bos[b, :, t], ref.bos[0, :, 0], tol),
            ("entropy", rows.entropy[b, :, t], ref.entropy[0, :, 0], 4 * tol * max(1.0, math.log(t + 1))),
            ("local mass", rows.local[b, :, t], ref.local[0, :, 0], tol),
        ):
            gap = (got.to(want.device) - want).abs().max().item()
            if not gap <= room:
                raise CaptureError(
                    f"layer {layer}: spot check of query row {t} (sequence {b}) failed: {name} differs from the explicit "
                    f"computation by {gap:.2e} (allowed {room:.1e}); this attention backend cannot be measured"
                )
