"""Figures of a comparison and a run: topology side by side, drift map, column and zone drift
over the run, the BOS-mass histogram before/after and the perplexity trajectory.

Every function returns a matplotlib ``Figure`` (Agg); :func:`png_bytes` turns one into PNG bytes
for the HTML report and :func:`save_png` writes it. Zone outlines: solid = targets, dashed =
frozen heads inside the surgical zone.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from headsurgeon.diagnosis.classes import count  # noqa: E402
from headsurgeon.diagnosis.figures import heatmap_axes, histogram_axes, text_color_on  # noqa: E402
from headsurgeon.figure_files import png_bytes as _png_bytes, save_figure  # noqa: E402

from .compare import Comparison  # noqa: E402
from .drift import ZONE_LABELS  # noqa: E402
from .trajectory import SET_LABELS  # noqa: E402

_ZONE_COLORS = {"targets": "tab:red", "frozen_in_zone": "tab:purple", "outside_zone": "tab:blue"}
_SHORT = {"targets": "targets", "frozen_in_zone": "frozen in zone", "outside_zone": "outside"}
_SET_COLORS = {"train": "tab:blue", "heldout": "tab:orange", "other": "tab:green"}


def png_bytes(fig, dpi: int = 110) -> bytes:
    """PNG bytes to embed in an HTML report (110 dpi keeps the page light; files use --dpi)."""
    return _png_bytes(fig, dpi=dpi)


def save_png(fig, path: str | Path) -> Path:
    """Write ``fig`` in the current figure format (:mod:`headsurgeon.figure_files`); returns the path written."""
    return save_figure(fig, path)


def _outline(ax, c: Comparison, color_t="deepskyblue", color_f="deepskyblue") -> None:
    for h in c.targets:
        ax.add_patch(Rectangle((h.head - 0.5, h.layer - 0.5), 1, 1, fill=False, ec=color_t, lw=1.6))
    for h in c.frozen_in_zone:
        ax.add_patch(Rectangle((h.head - 0.5, h.layer - 0.5), 1, 1, fill=False, ec=color_f, lw=1.2, ls="--"))


def key_indices(c: Comparison, best_step: int | None = None, limit: int = 4) -> list[int]:
    """Inputs worth a heatmap: first, second (for a run: right after re-initialisation), the best
    step, the last; all of them when there are at most ``limit``."""
    n = len(c.labels)
    if n <= limit:
        return list(range(n))
    picks = [0, 1]
    if best_step is not None and best_step in c.steps:
        picks.append(c.steps.index(best_step))
    picks.append(n - 1)
    return sorted(set(picks))


def topology_figure(c: Comparison, indices: list[int] | None = None, extra: dict[int, str] | None = None):
    """Layers x heads BOS-mass heatmaps side by side (S = BOS-sink, D = DEAD, e = low-entropy)."""
    idx = indices if indices is not None else key_indices(c)
    L, H = c.shape
    w = max(3.2, 0.3 * H + 1.2)
    fig, axes = plt.subplots(1, len(idx), figsize=(w * len(idx) + 1.2, max(3.8, 0.2 * L + 1.9)), squeeze=False, sharey=True,
                             layout="constrained")
    for ax, k in zip(axes[0], idx):
        n = count(c.classes[k])
        title = f"{c.labels[k]}{(' · ' + extra[k]) if extra and k in extra else ''}\ncollapsed {n['bos_sink'] + n['dead']} (S {n['bos_sink']}, D {n['dead']})"
        im = heatmap_axes(ax, c.bos_mass[k], c.classes[k], title)
        _outline(ax, c)
        if ax is not axes[0][0]:
            ax.set_ylabel("")
    fig.colorbar(im, ax=list(axes[0]), label="BOS mass", fraction=0.025, pad=0.01)
    fig.suptitle(f"{c.model.get('name', 'model')}: BOS mass per head" + (" (boxed: targets; dashed: frozen in zone)" if c.has_zone else ""), fontsize=10)
    return fig


def drift_figure(c: Comparison, i: int = -1):
    """Delta BOS mass (input ``i`` minus the first) per head; drifting heads dotted.

    The colour scale is set by the non-target heads (targets are expected to move a lot and
    would wash everything else out); target cells saturate and carry their value as text.
    """
    d = c.delta(i)
    L, H = c.shape
    frozen = ~c.masks["targets"]
    scale = float(np.abs(d[frozen]).max()) if frozen.any() else float(np.abs(d).max())
    scale = max(scale, 2 * c.threshold)
    fig, ax = plt.subplots(figsize=(max(6, 0.42 * H + 3), max(4.2, 0.25 * L + 2)), layout="constrained")
    im = ax.imshow(d, cmap="RdBu_r", vmin=-scale, vmax=scale, aspect="auto", interpolation="nearest")
    ls, hs = np.nonzero((np.abs(d) > c.threshold) & frozen)
    ax.scatter(hs, ls, s=9, c="black", marker="o")
    for h in c.targets:
        ax.add_patch(Rectangle((h.head - 0.5, h.layer - 0.5), 1, 1, fill=False, ec="black", lw=1.6))
        if L * H <= 600:
            v = d[h.layer, h.head]
            ax.text(h.head, h.layer, f"{v:+.2f}", ha="center", va="center", fontsize=7.5 if L <= 40 else 6.5,
                    color=text_color_on(im.cmap(im.norm(v))), fontweight="bold")
    for h in c.frozen_in_zone:
        ax.add_patch(Rectangle((h.head - 0.5, h.layer - 0.5), 1, 1, fill=False, ec="black", lw=1.1, ls="--"))
    ax.set_xticks(range(H) if H <= 32 else range(0, H, max(1, H // 16)))
    ax.set_yticks(range(0, L, 1 if L <= 32 else 2))
    ax.tick_params(labelsize=7)
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    z = c.zones(i)
    parts = [f"{_SHORT[k]} {v['drifting']}/{v['heads']}" for k, v in z.items() if v["heads"]]
    ax.set_title(f"Drift: BOS mass {c.labels[i]} minus {c.labels[0]}\ndrifting (|delta| > {c.threshold:g}): " + ", ".join(parts)
                 + "\n(dots: drifting frozen heads; boxed: targets; dashed: frozen in zone)", fontsize=9)
    fig.colorbar(im, ax=ax, extend="both", label="delta BOS mass (targets saturate)")
    return fig


def _x(c: Comparison) -> tuple[list, str]:
    later = c.steps[1:]
    if all(s is not None for s in later):
        return later, "step"
    return list(range(1, len(c.labels))), "input"


def column_figure(c: Comparison):
    """Mean |delta| per head index (column, targets left out) at every later input."""
    cols = c.columns()
    fig, ax = plt.subplots(figsize=(7, 4))
    cmap = plt.get_cmap("tab10" if len(cols) <= 10 else "viridis")
    if len(c.labels) == 2:
        vals = [r["mean_abs_delta"][0] or 0.0 for r in cols]
        ax.bar([r["index"] for r in cols], vals, color="tab:blue")
        ax.set_xlabel("head index (column)")
        ax.set_xticks([r["index"] for r in cols] if len(cols) <= 32 else range(0, len(cols), max(1, len(cols) // 16)))
        ax.set_title(f"Column drift: mean |delta| per head index, {c.labels[-1]} vs {c.labels[0]} (targets excluded)", fontsize=10)
    else:
        x, xlabel = _x(c)
        for r in cols:
            y = [np.nan if v is None else v for v in r["mean_abs_delta"]]
            color = cmap(r["index"] % 10) if len(cols) <= 10 else cmap(r["index"] / max(1, len(cols) - 1))
            ax.plot(x, y, marker="o", ms=3, lw=1.3, color=color, label=f"H{r['index']}")
        ax.set_xlabel(xlabel)
        ax.legend(fontsize=7, ncol=2 if len(cols) > 8 else 1, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.set_title("Column drift over the run: mean |delta| per head index vs the first input (targets excluded)", fontsize=10)
    ax.axhline(c.threshold, color="grey", ls=":", lw=1)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("mean |delta BOS mass|")
    fig.tight_layout()
    return fig


def zone_figure(c: Comparison):
    """Per zone, mean |delta| and share of drifting heads at every later input (the two phenomena)."""
    traj = c.trajectory()
    x, xlabel = _x(c)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for z in ("outside_zone", "frozen_in_zone", "targets"):
        if not traj[0]["zones"][z]["heads"]:
            continue
        n = traj[0]["zones"][z]["heads"]
        lab = f"{ZONE_LABELS[z]} ({n})"
        if z != "targets":  # the targets' own change (~0.5 and more) would flatten the frozen heads' lines
            a1.plot(x, [r["zones"][z]["mean_abs_delta"] for r in traj], marker="o", ms=3, color=_ZONE_COLORS[z], label=lab)
        a2.plot(x, [100 * r["zones"][z]["drifting"] / n for r in traj], marker="o", ms=3, color=_ZONE_COLORS[z], label=lab)
    a1.axhline(c.threshold, color="grey", ls=":", lw=1)
    a1.set_ylim(bottom=0)
    a2.set_ylim(bottom=0)
    a1.set_ylabel("mean |delta BOS mass| (frozen heads)")
    a2.set_ylabel(f"% of heads drifting (|delta| > {c.threshold:g})")
    for a in (a1, a2):
        a.set_xlabel(xlabel)
        a.legend(fontsize=7)
    if not c.frozen_in_zone:
        a1.text(0.02, 0.5, "no frozen heads inside the zone in this plan", transform=a1.transAxes, fontsize=7, va="center", color="dimgrey")
    fig.suptitle(f"Drift per zone vs {c.labels[0]}: early global redistribution vs late in-zone degradation", fontsize=10)
    fig.tight_layout()
    return fig


def histogram_figure(c: Comparison, i: int = -1):
    """BOS-mass distribution of all heads, first input vs input ``i``."""
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    histogram_axes(ax, c.bos_mass[0], c.labels[0], color="tab:grey", alpha=0.6)
    histogram_axes(ax, c.bos_mass[i], c.labels[i], color="tab:orange", alpha=0.6)
    t = c.class_thresholds
    ax.axvline(t["sink"], color="grey", ls="--", lw=1)
    ax.axvline(t["dead"], color="black", ls="--", lw=1)
    ax.set_xlabel(f"BOS mass (dashed: sink {t['sink']:.2f} and DEAD {t['dead']:.2f} thresholds)")
    ax.set_ylabel("heads")
    ax.legend(fontsize=8)
    ax.set_title(f"BOS-mass distribution before and after ({c.bos_mass[0].size} heads)", fontsize=10)
    fig.tight_layout()
    return fig


def perplexity_figure(traj: dict):
    """Perplexity per text set over the run; dashed: stock; dotted vertical: best step."""
    fig, ax = plt.subplots(figsize=(7.5, 4))
    x = traj["steps"]
    values = []
    for s in traj["sets"]:
        y = [np.nan if v is None else v for v in traj["series"][s]]
        values += [v for v in y if np.isfinite(v)]
        ax.plot(x, y, marker="o", ms=3, color=_SET_COLORS[s], label=SET_LABELS[s])
        if traj["stock"].get(s) is not None:
            ax.axhline(traj["stock"][s], color=_SET_COLORS[s], ls="--", lw=1)
            values.append(traj["stock"][s])
    best = traj.get("best")
    if best is not None:
        ax.axvline(best["step"], color="black", ls=":", lw=1.2)
        right = bool(x) and best["step"] > (min(x) + max(x)) / 2
        ax.text(best["step"], 0.98, f" best ({best['metric']}) \n step {best['step']} ", transform=ax.get_xaxis_transform(),
                fontsize=7, va="top", ha="right" if right else "left")
    if values and max(values) / max(min(values), 1e-9) > 4:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        # within a decade every minor tick gets a label; wider ranges label 2, 3 and 5 only
        narrow = max(values) / min(values) < 10
        ax.yaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}" if narrow or f"{v:g}"[0] in "235" else ""))
    ax.set_xlabel("optimizer step (0 = right after re-initialisation)")
    ax.set_ylabel("perplexity")
    ax.legend(fontsize=8, title="dashed: stock model", title_fontsize=7)
    ax.set_title("Perplexity over the surgery run", fontsize=10)
    fig.tight_layout()
    return fig
