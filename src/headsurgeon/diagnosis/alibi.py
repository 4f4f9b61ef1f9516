"""ALiBi analysis: how a head's slope relates to its BOS mass.

A gentle slope barely penalises attending to position 0 from far away, so such heads are free
to sink; a steep slope makes a distant BOS unreachable. (The bloom paper's wording has this
backwards; see SCIENCE.md, "Correction".) We report the slopes, the measured Spearman rank
correlation between slope and BOS mass, and let the numbers speak.
"""

from __future__ import annotations

import numpy as np


def alibi_analysis(slopes: np.ndarray, bos_mass: np.ndarray, collapsed: np.ndarray) -> dict:
    """``slopes [H]``, ``bos_mass`` and boolean ``collapsed`` ``[L, H]``."""
    from scipy.stats import spearmanr  # imported here: scipy.stats adds ~1.5 s to every CLI start

    L, H = bos_mass.shape
    per_head = np.broadcast_to(slopes[None, :], (L, H))
    rho, p = spearmanr(per_head.ravel(), bos_mass.ravel())
    col_rho, col_p = spearmanr(slopes, bos_mass.mean(0))
    collapsed_slopes = per_head[collapsed]
    healthy_slopes = per_head[~collapsed]
    return {
        "slopes": [float(s) for s in slopes],
        "spearman_rho_all_heads": float(rho),
        "spearman_p_all_heads": float(p),
        "spearman_rho_head_index_means": float(col_rho),
        "spearman_p_head_index_means": float(col_p),
        "median_slope_collapsed": float(np.median(collapsed_slopes)) if collapsed_slopes.size else None,
        "median_slope_healthy": float(np.median(healthy_slopes)) if healthy_slopes.size else None,
        "reading": _reading(rho),
    }


def _reading(rho: float) -> str:
    if np.isnan(rho):
        return "no relation measurable (constant BOS mass or slopes)"
    direction = "gentler" if rho < 0 else "steeper"
    strength = "strong" if abs(rho) >= 0.5 else "moderate" if abs(rho) >= 0.3 else "weak"
    return f"{strength} relation: heads with {direction} slopes have higher BOS mass (Spearman rho {rho:+.2f})"
