"""Drift arithmetic: how far each head's BOS mass moved, summarised per surgical zone.

Pure numpy on ``[layers, heads]`` arrays, so every number can be checked by hand. Definitions
(SCIENCE.md, "Analyses after surgery"):

* ``delta = BOS mass after - BOS mass before`` per head; a head *drifts* when
  ``|delta| > threshold`` (0.05 by default, strictly greater).
* Zones: ``targets`` (re-initialised and trained), ``frozen_in_zone`` (kept frozen inside the
  surgical zone, e.g. healthy heads of a band), ``outside_zone`` (every other head).
* A zone's ``mean_abs_delta`` is the mean of ``|delta|`` over *all* heads of the zone, not only
  the drifting ones. That is the paper's convention: it reports "76 of ~200 outside heads drift,
  mean |delta| 0.043", below the 0.05 drift threshold, which a mean over drifters could not be.
* A *recovery* is a head collapsed before (BOS-sink or DEAD) and not collapsed after; an
  *iatrogenic collapse* is a head not collapsed before and collapsed after.
"""

from __future__ import annotations

import numpy as np

from headsurgeon.diagnosis import COLLAPSED
from headsurgeon.models.adapters import HeadRef

ZONES = ("targets", "frozen_in_zone", "outside_zone")
ZONE_LABELS = {"targets": "targets", "frozen_in_zone": "frozen, inside the zone", "outside_zone": "outside the zone"}


def zone_masks(shape: tuple[int, int], targets: list[HeadRef], frozen_in_zone: list[HeadRef]) -> dict[str, np.ndarray]:
    """Boolean ``[L, H]`` masks per zone; a head listed in both counts as a target."""
    t = np.zeros(shape, dtype=bool)
    f = np.zeros(shape, dtype=bool)
    for h in targets:
        t[h.layer, h.head] = True
    for h in frozen_in_zone:
        f[h.layer, h.head] = True
    f &= ~t
    return {"targets": t, "frozen_in_zone": f, "outside_zone": ~(t | f)}


def zone_of(masks: dict[str, np.ndarray], layer: int, head: int) -> str:
    return next(z for z in ZONES if masks[z][layer, head])


def zone_stats(delta: np.ndarray, mask: np.ndarray, threshold: float) -> dict:
    """Drift summary of the heads selected by ``mask``; heads listed largest ``|delta|`` first."""
    d = delta[mask]
    ls, hs = np.nonzero(mask)
    drifting = np.abs(d) > threshold
    order = np.argsort(-np.abs(d), kind="stable")
    return {
        "heads": int(mask.sum()),
        "drifting": int(drifting.sum()),
        "drifting_fraction": float(drifting.mean()) if d.size else 0.0,
        "mean_abs_delta": float(np.abs(d).mean()) if d.size else 0.0,
        "mean_delta": float(d.mean()) if d.size else 0.0,
        "max_abs_delta": float(np.abs(d).max()) if d.size else 0.0,
        "drifting_heads": [
            {"head": str(HeadRef(int(ls[i]), int(hs[i]))), "delta": round(float(d[i]), 6)} for i in order if drifting[i]
        ],
    }


def transitions(
    before_bos: np.ndarray, before_cls: np.ndarray, after_bos: np.ndarray, after_cls: np.ndarray, masks: dict[str, np.ndarray],
    threshold: float,
) -> tuple[list[dict], list[dict]]:
    """``(recoveries, iatrogenic collapses)`` between two diagnoses, in layer/head order.

    Each row says whether the head also *drifted* (``|delta| > threshold``): a head sitting at
    the sink threshold can change class on a tiny move, and such a borderline crossing is not
    the same finding as a head that really woke up or collapsed.
    """
    was = np.isin(before_cls, COLLAPSED)
    now = np.isin(after_cls, COLLAPSED)

    def rows(sel: np.ndarray) -> list[dict]:
        return [
            {
                "head": str(HeadRef(int(l), int(h))),
                "zone": zone_of(masks, l, h),
                "before": str(before_cls[l, h]),
                "after": str(after_cls[l, h]),
                "bos_before": round(float(before_bos[l, h]), 6),
                "bos_after": round(float(after_bos[l, h]), 6),
                "delta": round(float(after_bos[l, h] - before_bos[l, h]), 6),
                "drifting": bool(abs(after_bos[l, h] - before_bos[l, h]) > threshold),
            }
            for l, h in zip(*np.nonzero(sel))
        ]

    return rows(was & ~now), rows(~was & now)


def column_drift(delta: np.ndarray, include: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per head index (column): ``(heads counted, mean |delta|, drifting count)`` over the
    layers where ``include`` is true. Columns with no counted head get ``nan`` as mean."""
    n = include.sum(0)
    absd = np.where(include, np.abs(delta), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, absd.sum(0) / np.maximum(n, 1), np.nan)
    drifting = (include & (np.abs(delta) > threshold)).sum(0)
    return n.astype(int), mean, drifting.astype(int)


def first_reaching(values: list[float], fraction: float = 0.5) -> int | None:
    """Index of the first value that reaches ``fraction`` of the largest value (None if all 0).

    Used to tell early from late drift: global redistribution reaches half its peak early in a
    run, late local degradation only near its end.
    """
    if not values or max(values) <= 0:
        return None
    peak = max(values)
    return next(i for i, v in enumerate(values) if v >= fraction * peak)
