"""Active-dormant classification of heads across input domains (Guo et al. 2024).

A head is *dormant* on a domain when its activity metric there (BOS mass, or share of
attention on the sink tokens; mean over the domain's prompts) exceeds ``dormant_threshold``,
*active* otherwise. Over domains:

* ``always_dormant``: dormant on every domain;
* ``always_active``: active on every domain;
* ``domain_dependent``: dormant on at least one domain, active on at least one, and
  ``max - min`` of the metric over domains exceeds ``margin`` — a real switch, not a head
  hovering at the threshold;
* ``borderline``: dormant on some domains and active on others, but with a spread within the
  margin.
"""

from __future__ import annotations

import numpy as np

from headsurgeon.models.adapters import HeadRef

ALWAYS_ACTIVE, ALWAYS_DORMANT, DOMAIN_DEPENDENT, BORDERLINE = "always_active", "always_dormant", "domain_dependent", "borderline"
DORMANCY_CLASSES = (ALWAYS_ACTIVE, ALWAYS_DORMANT, DOMAIN_DEPENDENT, BORDERLINE)


def classify_dormancy(metric: np.ndarray, *, threshold: float, margin: float) -> np.ndarray:
    """``metric [domains, L, H]`` -> class name per head ``[L, H]``."""
    dormant = metric > threshold
    spread = metric.max(0) - metric.min(0)
    out = np.full(metric.shape[1:], BORDERLINE, dtype=object)
    out[dormant.all(0)] = ALWAYS_DORMANT
    out[(~dormant).all(0)] = ALWAYS_ACTIVE
    out[dormant.any(0) & (~dormant).any(0) & (spread > margin)] = DOMAIN_DEPENDENT
    return out


def count_dormancy(classes: np.ndarray) -> dict[str, int]:
    return {c: int((classes == c).sum()) for c in DORMANCY_CLASSES}


def domain_dependent_heads(
    metric: np.ndarray, classes: np.ndarray, domains: list[str], *, threshold: float, within: np.ndarray | None = None
) -> list[dict]:
    """Domain-dependent heads, strongest switch (largest spread) first, with per-domain numbers.

    ``within [domains, L, H]`` (optional): the metric's standard deviation over each domain's
    prompts; its mean over domains is reported so a switch can be read against prompt noise.
    """
    rows = []
    for l, h in zip(*np.nonzero(classes == DOMAIN_DEPENDENT)):
        values = metric[:, l, h]
        rows.append({
            "head": str(HeadRef(int(l), int(h))),
            "layer": int(l),
            "index": int(h),
            "spread": round(float(values.max() - values.min()), 4),
            "dormant_in": [d for d, v in zip(domains, values) if v > threshold],
            "active_in": [d for d, v in zip(domains, values) if v <= threshold],
            "values": {d: round(float(v), 4) for d, v in zip(domains, values)},
        })
        if within is not None:
            w = within[:, l, h]
            rows[-1]["within_domain_std"] = round(float(np.nanmean(w)), 4) if np.isfinite(w).any() else None
    return sorted(rows, key=lambda r: -r["spread"])


def pick_intervention_heads(metric: np.ndarray, classes: np.ndarray, *, n_dependent: int, n_controls: int) -> list[tuple[HeadRef, str]]:
    """Default heads to intervene on: the strongest domain-dependent heads, then the most
    dormant always-dormant heads and the least sinking always-active heads as controls."""
    spread = metric.max(0) - metric.min(0)

    def top(cls: str, key: np.ndarray, n: int) -> list[tuple[HeadRef, str]]:
        ls, hs = np.nonzero(classes == cls)
        order = np.argsort(-key[ls, hs], kind="stable")[:n]
        return [(HeadRef(int(ls[i]), int(hs[i])), cls) for i in order]

    return (
        top(DOMAIN_DEPENDENT, spread, n_dependent)
        + top(ALWAYS_DORMANT, metric.min(0), n_controls)
        + top(ALWAYS_ACTIVE, -metric.max(0), n_controls)
    )
