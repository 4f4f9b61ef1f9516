"""From one prompt's reductions to the three phenomena, and massive dimensions across prompts.

Per prompt (:func:`summarise_prompt`): the sink tokens (positions on which at least
``sink_head_fraction`` of all heads sink), each head's attention on position 0 (BOS mass) and
on the sink tokens (sink share), and value-state and residual-state norms in three token
groups: **first** (position 0), **later** (sink tokens after position 0; mean over them, NaN
if the prompt has none) and **other** (median over every token that is neither). Position 0
gets its own group whether or not it is a sink token in that prompt (the prompt record says
whether it is): in the models we measured it is where the extremes are, and averaging it with
later sink tokens, whose norms behave differently across layers, would blur both curves.
Drain and peak ratios are ``first / other`` and ``later / other``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .probe import PromptProbe
from .settings import ExtremesSettings
from .sinks import head_sink_mask, mean_received, share_on, sink_tokens

GROUPS = ("first", "later")


@dataclass
class PromptSummary:
    """Per-prompt results; arrays are ``[L, H]`` (heads) or ``[L+1]`` (residual indices)."""

    sink_positions: np.ndarray
    sink_counts: np.ndarray  # [T] heads sinking on each position
    sink_received: np.ndarray  # [T] mean attention received, averaged over heads
    sinks_first: np.ndarray  # [L, H] bool: head sinks on position 0
    sinks_elsewhere: np.ndarray  # [L, H] bool: head sinks on some position > 0
    bos_mass: np.ndarray
    sink_share: np.ndarray
    value_first: np.ndarray | None = None
    value_later: np.ndarray | None = None
    value_other: np.ndarray | None = None
    resid_first: np.ndarray | None = None
    resid_later: np.ndarray | None = None
    resid_other: np.ndarray | None = None
    median_abs: np.ndarray | None = None

    def group_positions(self, group: str) -> np.ndarray:
        """Token positions of a group: ``first`` -> [0], ``later`` -> sink tokens after 0."""
        if group == "first":
            return np.array([0])
        return self.sink_positions[self.sink_positions > 0]


def _groups(norms: np.ndarray, sinks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``norms [..., T]`` -> (position 0, mean over later sinks, median over the rest)."""
    T = norms.shape[-1]
    later = sinks[sinks > 0]
    rest = np.setdiff1d(np.arange(1, T), later)
    nan = np.full(norms.shape[:-1], np.nan)
    return (
        norms[..., 0],
        norms[..., later].mean(-1) if len(later) else nan,
        np.median(norms[..., rest], axis=-1) if len(rest) else nan,
    )


def summarise_prompt(probe: PromptProbe, settings: ExtremesSettings) -> PromptSummary:
    n = probe.length
    sinks = head_sink_mask(probe.received, n, threshold=settings.sink_threshold, min_visible=settings.min_visible_queries)
    positions, counts = sink_tokens(sinks, head_fraction=settings.sink_head_fraction)
    s = PromptSummary(
        sink_positions=positions,
        sink_counts=counts,
        sink_received=mean_received(probe.received, n).mean((0, 1)),
        sinks_first=sinks[..., 0],
        sinks_elsewhere=sinks[..., 1:].any(-1),
        bos_mass=share_on(probe.received, [0], n),
        sink_share=share_on(probe.received, positions, n),
    )
    if probe.value_norm is not None:
        s.value_first, s.value_later, s.value_other = _groups(probe.value_norm, positions)
    if probe.resid_norm is not None:
        s.resid_first, s.resid_later, s.resid_other = _groups(probe.resid_norm, positions)
        s.median_abs = probe.median_abs
    return s


def massive_dims(probes: list[PromptProbe], summaries: list[PromptSummary], *, report: int, group: str = "first") -> list[list[dict]]:
    """Per residual index (0 = block 0 input): the ``report`` hidden dimensions carrying the
    largest values at the tokens of ``group`` (``first``: position 0; ``later``: later sink tokens).

    Dimensions are ranked by their mean |value| over the group's tokens (counting 0 where the
    dimension is not among a token's top-k). Each entry: ``dim``; ``abs`` (mean |value| where
    it is among the token's top-k); ``signed`` (same, with sign); ``coverage`` (fraction of the
    group's tokens where it is in the top-k); ``x_median`` (``abs`` over the layer's median
    |activation| across all tokens and dimensions); ``abs_elsewhere`` (mean |value| over all
    other tokens, from the prompts where that is exact; ``None`` if none).
    """
    usable = [(p, s.group_positions(group)) for p, s in zip(probes, summaries) if p.top_idx is not None and len(s.group_positions(group))]
    if not usable:
        return []
    n_index = usable[0][0].top_idx.shape[0]
    out = []
    for i in range(n_index):
        total_abs, total_signed, hits = {}, {}, {}
        n_sinks = 0
        medians = []
        for p, positions in usable:
            medians.append(p.median_abs[i])
            for pos in positions:
                n_sinks += 1
                for d, v in zip(p.top_idx[i, pos].tolist(), p.top_val[i, pos].tolist()):
                    total_abs[d] = total_abs.get(d, 0.0) + abs(v)
                    total_signed[d] = total_signed.get(d, 0.0) + v
                    hits[d] = hits.get(d, 0) + 1
        ranked = sorted(total_abs, key=lambda d: -total_abs[d] / n_sinks)[:report]
        median = float(np.mean(medians))
        layer = []
        for d in ranked:
            mean_abs = total_abs[d] / hits[d]
            layer.append({
                "dim": int(d),
                "abs": round(mean_abs, 4),
                "signed": round(total_signed[d] / hits[d], 4),
                "coverage": round(hits[d] / n_sinks, 4),
                "x_median": round(mean_abs / median, 2) if median > 0 else None,
                "abs_elsewhere": _abs_elsewhere(usable, i, d),
            })
        out.append(layer)
    return out


def _abs_elsewhere(usable, i: int, d: int) -> float | None:
    """Mean |h_d| over the other tokens: the stored per-dim sum minus the group's values, using
    only prompts where ``d`` is in the top-k at every token of the group (so the sum is exact)."""
    total, count = 0.0, 0
    for p, positions in usable:
        at_sinks = 0.0
        for pos in positions:
            hit = np.nonzero(p.top_idx[i, pos] == d)[0]
            if hit.size == 0:
                break
            at_sinks += abs(float(p.top_val[i, pos, hit[0]]))
        else:
            others = p.length - len(positions)
            if others > 0:
                total += float(p.dim_abs_sum[i, d]) - at_sinks
                count += others
    return round(total / count, 4) if count else None
