"""The lab's figures (matplotlib, Agg, written atomically by :func:`headsurgeon.figure_files.save_figure`:
PNG at 150 dpi unless ``lab run|analyze --format svg|pdf --dpi N`` says otherwise; the names below are the PNG ones).

* ``collapse.png``: collapsed fraction and mean BOS mass against training step, per encoding
  (thick: mean over seeds; thin: each seed);
* ``perplexity.png``: held-out perplexity against step, per encoding;
* ``slopes.png``: ALiBi models' BOS mass per head index at step 0 and at the end (slope on the
  axis), and Spearman's rho (slope vs BOS mass) against step for every encoding;
* ``heatmaps.png``: layers x heads BOS mass at the end, one panel per encoding (first seed).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from headsurgeon.diagnosis.figures import heatmap_axes  # noqa: E402
from headsurgeon.figure_files import save_figure  # noqa: E402

COLORS = {"alibi": "tab:red", "rope": "tab:blue", "nope": "tab:gray", "learned": "tab:green"}


def _save(fig, path: Path) -> str:
    return str(save_figure(fig, path, tight=True))


def _per_seed(runs, enc, key):
    for r in runs:
        if r.encoding == enc and r.rows:
            yield [row["step"] for row in r.rows], [row.get(key) for row in r.rows]


def _series_axes(ax, doc, runs, key, ylabel, *, log=False):
    for enc, e in doc["encodings"].items():
        c = COLORS.get(enc)
        for steps, vals in _per_seed(runs, enc, key):
            ax.plot(steps, vals, color=c, lw=0.7, alpha=0.45)
        mean = [s["mean"] if s else np.nan for s in e["series"][key]]
        n = len(e["runs"])
        ax.plot(e["steps"], mean, color=c, lw=2.2, marker="o", ms=3, label=f"{enc} ({n} seed{'s' if n != 1 else ''})")
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)


def _zoom(ax) -> float:
    """Top of a BOS-mass axis: 1 when something comes near the sink threshold, else zoomed in
    (small differences must stay visible; the axis label says the scale)."""
    top = max((max((y for y in line.get_ydata() if np.isfinite(y)), default=0) for line in ax.get_lines()), default=0)
    return 1.0 if top > 0.4 else max(0.05, 1.25 * top)


def collapse_figure(doc, runs, path: Path) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    _series_axes(axes[0], doc, runs, "collapsed_fraction", "fraction of heads collapsed (BOS mass > 0.5)")
    axes[0].set_ylim(-0.02, 1.02)
    axes[0].legend(fontsize=8)
    _series_axes(axes[1], doc, runs, "mean_bos_mass", "mean BOS mass over heads")
    axes[1].set_ylim(0, _zoom(axes[1]))
    fig.suptitle("Collapse during training from scratch, per position encoding (thin lines: single seeds)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def perplexity_figure(doc, runs, path: Path) -> str:
    keys = [k for k in ("heldout_ppl", "other_ppl") if any(e["series"][k][-1] for e in doc["encodings"].values())]
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        _series_axes(ax, doc, runs, key, {"heldout_ppl": "held-out perplexity (training corpus)", "other_ppl": "perplexity, other corpus"}[key], log=True)
        ax.legend(fontsize=8)
    fig.suptitle("Did the models learn? Token-weighted perplexity against step", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def slopes_figure(doc, runs, path: Path) -> str | None:
    slopes = doc.get("slopes")
    if slopes is None:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.2))
    ax = axes[0]
    H = len(slopes)
    alibi = [r for r in runs if r.encoding == "alibi" and r.rows]
    end = doc["encodings"]["alibi"]["end"]["step"]
    for step, ls, label in ((0, "--", "step 0 (untrained)"), (end, "-", f"step {end}")):
        bos = np.stack([np.asarray(next(row for row in r.rows if row["step"] == step)["bos_mass"]) for r in alibi])
        for l in range(bos.shape[1]):
            ax.plot(range(H), bos[:, l].mean(0), color="tab:red", ls=ls, lw=0.6, alpha=0.4)
        ax.plot(range(H), bos.mean((0, 1)), color="tab:red", ls=ls, lw=2.2, marker="o", ms=3, label=f"{label}: mean over layers, seeds")
    ax.set_xticks(range(H))
    ax.set_xticklabels([f"H{h}\n{s:.3g}" for h, s in enumerate(slopes)], fontsize=7)
    ax.set_xlabel("head index / ALiBi slope (steep -> gentle)")
    ax.set_ylabel("BOS mass")
    top = _zoom(ax)
    if top >= 0.5:
        ax.axhline(0.5, color="grey", ls=":", lw=1)
    ax.set_ylim(0, top)
    ax.legend(fontsize=8)
    ax.set_title("ALiBi models: BOS mass per head index (thin: single layers)"
                 + ("" if top >= 0.5 else f"\ny axis zoomed to 0-{top:.2f}: sink threshold 0.5 far above"), fontsize=9)
    ax = axes[1]
    for enc, e in doc["encodings"].items():
        rel = e["slope_relation_over_steps"].get("rho_all_heads")
        if not rel:
            continue
        mean = [s["mean"] if s else np.nan for s in rel]
        lo = [s["min"] if s else np.nan for s in rel]
        hi = [s["max"] if s else np.nan for s in rel]
        ax.plot(e["steps"], mean, color=COLORS.get(enc), lw=2, marker="o", ms=3,
                label=enc if enc == "alibi" else f"{enc} (null: its indices have no slope)")
        ax.fill_between(e["steps"], lo, hi, color=COLORS.get(enc), alpha=0.12)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylim(-1, 1)
    ax.set_xlabel("training step")
    ax.set_ylabel("Spearman rho (slope vs BOS mass, all heads)")
    ax.set_title("rho < 0: gentler slopes have more BOS mass (band: seed range)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def heatmap_figure(doc, runs, path: Path) -> str:
    firsts = [next(r for r in sorted(runs, key=lambda r: r.seed) if r.encoding == enc and r.rows) for enc in doc["encodings"]]
    fig, axes = plt.subplots(1, len(firsts), figsize=(3.4 * len(firsts) + 1, 3.2), squeeze=False)
    im = None
    for ax, r in zip(axes[0], firsts):
        row = r.rows[-1]
        classes = np.where(np.asarray(row["collapsed"]), "bos_sink", "healthy")
        im = heatmap_axes(ax, np.asarray(row["bos_mass"]), classes, f"{r.encoding} seed {r.seed}, step {row['step']}\n"
                          f"collapsed {100 * row['collapsed_fraction']:.0f}% (S)")
    fig.colorbar(im, ax=axes[0].tolist(), label="BOS mass")
    return _save(fig, path)


def write_figures(doc: dict, runs, out: Path) -> dict[str, str]:
    files = {"collapse_png": collapse_figure(doc, runs, out / "collapse.png"),
             "perplexity_png": perplexity_figure(doc, runs, out / "perplexity.png"),
             "heatmaps_png": heatmap_figure(doc, runs, out / "heatmaps.png")}
    slopes = slopes_figure(doc, runs, out / "slopes.png") if "alibi" in doc["encodings"] else None
    if slopes:
        files["slopes_png"] = slopes
    return files
