"""Study figures: curves per arm with bands over seeds, and end points per arm with every seed.

* ``curves``: training loss, held-out perplexity (training distribution), other-distribution
  perplexity and the fraction of the arm's heads that are healthy, against optimizer steps. In
  the healthy panel the arms are drawn from wide to thin, so arms with equal fractions all show.
  Perplexities are divided by the same seed's stock value: seeds hold out different documents,
  so raw perplexities differ by seed more than arms do, while the ratio shows the paired effect. A
  line is the mean over seeds, the band the min-max range over seeds (with 3 seeds a standard
  deviation band would suggest a precision the data do not have); the stock model is a dashed
  line.
* ``endpoints``: per arm, each seed as a dot and the mean with its bootstrap CI, for the
  held-out perplexity at the best point and the other-distribution perplexity there (both / stock),
  the heads' ablation effect at the end (stock value as a hollow marker) and the drift of
  untouched heads.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from headsurgeon.evaluation.figures import png_bytes  # noqa: E402

from .result import StudyResult  # noqa: E402
from .settings import ARM_LABELS, ARMS  # noqa: E402

COLORS = {"stock": "#555555", "surgery": "#d62728", "no_reinit": "#1f77b4", "random_healthy": "#2ca02c",
          "extended": "#9467bd", "lora": "#ff7f0e"}
_PANELS = (("train_loss_mean", "training loss (mean since the previous evaluation, nats)"),
           ("train_vs_stock", "training-corpus PPL / stock (the paper's metric)"),
           ("heldout_vs_stock", "held-out PPL (training distribution) / stock"),
           ("other_vs_stock", "other-distribution PPL / stock"),
           ("recovery", "fraction of the arm's heads healthy"))


def _arms(study: StudyResult) -> list[str]:
    return [a for a in ARMS if a in study.curves]


def _n_seeds(study: StudyResult) -> int:
    return max((s.n for m in study.arms.values() for s in m.values()), default=0)


def _complete(study: StudyResult, arms: list[str], key: str, *, like: str) -> bool:
    """Whether curve ``key`` has as many seeds as curve ``like`` at every step of every arm: a
    mean over only the runs trained after it was recorded would mislead, so the panel falls back."""
    for arm in arms:
        curve, ref = study.curves[arm].get(key), study.curves[arm].get(like)
        if curve is None or ref is None or curve["n"] != ref["n"]:
            return False
    return bool(arms)


def curves_figure(study: StudyResult):
    fig, axes = plt.subplots(2, 3, figsize=(15, 7.5))
    axes.flat[-1].axis("off")  # five panels
    stock = study.curves.get("stock", {})
    for ax, (key, title) in zip(axes.flat, _PANELS):
        arms = [a for a in _arms(study) if a != "stock"]
        if key == "train_loss_mean" and not _complete(study, arms, key, like="train_loss"):  # some runs predate the mean
            key, title = "train_loss", "training loss (last step before each evaluation, nats)"
        for i, arm in enumerate(arms):
            c = study.curves[arm].get(key)
            if c is None:  # a study written before this curve existed
                continue
            pts = [(s, m, lo, hi) for s, m, lo, hi in zip(c["step"], c["mean"], c["low"], c["high"]) if m is not None]
            if not pts:
                continue
            s, m, lo, hi = (np.array(v, dtype=float) for v in zip(*pts))
            # healthy fractions are often equal across arms (all 1 or all 0): there each later arm
            # is drawn thinner on top, so no line hides another one
            if key == "recovery":
                ax.plot(s, m, "-", color=COLORS[arm], label=ARM_LABELS[arm], lw=1.6 + 2.2 * (len(arms) - 1 - i),
                        solid_capstyle="butt")
            else:
                ax.plot(s, m, "-o", ms=3, color=COLORS[arm], label=ARM_LABELS[arm], lw=1.6)
            ax.fill_between(s, lo, hi, color=COLORS[arm], alpha=0.15, lw=0)
        ref = stock.get(key, {}).get("mean", [None])[0] if stock else None
        if not ax.lines:
            ax.text(0.5, 0.5, "not measured in this study", ha="center", va="center", transform=ax.transAxes, color="#777")
        if ref is not None:
            ax.axhline(ref, color=COLORS["stock"], ls="--", lw=1.2, label="stock model")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("optimizer step")
        if key == "recovery":
            ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    handles, labels = axes.flat[2].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    n = _n_seeds(study)
    fig.suptitle(f"{study.model.get('name')}: mean over {n} seed{'' if n == 1 else 's'}, band = min-max over seeds", fontsize=11)
    fig.tight_layout(rect=(0, 0.07, 1, 0.96))
    return fig


def endpoints_figure(study: StudyResult):
    panels = (("heldout_best_vs_stock", "held-out PPL at the best point / stock"), ("other_at_best_vs_stock", "other-distribution PPL there / stock"),
              ("ablation_delta_final", "loss increase, heads ablated (nats)"), ("drift_count", "untouched heads drifting"))
    arms = _arms(study)
    fig, axes = plt.subplots(1, len(panels), figsize=(3.1 * len(panels) + 1, 4.2))
    rng = np.random.default_rng(0)
    for ax, (key, title) in zip(axes, panels):
        for i, arm in enumerate(arms):
            st = study.arms[arm][key]
            if st.mean is None or (arm == "stock" and key.endswith("vs_stock")):
                continue
            ax.scatter(i + rng.uniform(-0.12, 0.12, len(st.values)), st.values, s=14, color=COLORS[arm], alpha=0.7, zorder=3)
            ax.errorbar(i + 0.28, st.mean, yerr=[[st.mean - st.ci_low], [st.ci_high - st.mean]], fmt="s", color=COLORS[arm],
                        ms=5, capsize=3, zorder=4)
            if key == "ablation_delta_final" and arm != "stock":
                ref = study.arms[arm]["ablation_delta_stock"]
                if ref.mean is not None:
                    ax.scatter([i + 0.28], [ref.mean], s=40, facecolors="none", edgecolors=COLORS[arm], zorder=4)
        if key.endswith("vs_stock"):
            ax.axhline(1.0, color=COLORS["stock"], ls="--", lw=1)
        if not ax.collections:
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes, color="#777")
        ax.set_xticks(range(len(arms)))
        ax.set_xticklabels([a.replace("_", "\n") for a in arms], fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3, axis="y")
        ax.tick_params(axis="y", labelsize=8)
    fig.suptitle("dots: seeds; square: mean with bootstrap CI; hollow circle: the same heads ablated in the stock model", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return fig


FIGURES = {"curves": curves_figure, "endpoints": endpoints_figure}


def render_figures(study: StudyResult) -> dict[str, bytes]:
    """PNG bytes of every study figure (for files and for the HTML section)."""
    return {name: png_bytes(make(study)) for name, make in FIGURES.items()}


def save_figures(study: StudyResult, folder: str | Path, pngs: dict[str, bytes] | None = None) -> dict[str, Path]:
    from headsurgeon.figure_files import current_format, figure_bytes, figure_path
    from headsurgeon.io import atomic_write_bytes

    folder = Path(folder)
    pngs = pngs or render_figures(study)
    paths = {}
    for name, data in pngs.items():
        paths[name] = figure_path(folder / f"{name}.png")
        # the HTML's PNG bytes serve a PNG file as they are; another format is drawn again
        atomic_write_bytes(paths[name], data if current_format() == "png" else figure_bytes(FIGURES[name](study)))
    return paths
