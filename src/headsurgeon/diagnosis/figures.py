"""Figures a person looks at: the layers x heads BOS-mass heatmap and the BOS-mass histogram."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from headsurgeon.figure_files import save_figure  # noqa: E402

from .classes import BOS_SINK, DEAD, LOW_ENTROPY  # noqa: E402
from .result import Diagnosis  # noqa: E402

_MARKS = {BOS_SINK: "S", DEAD: "D", LOW_ENTROPY: "e"}


def heatmap_axes(ax, bos_mass: np.ndarray, classes: np.ndarray | None, title: str):
    """Draw one layers x heads heatmap on ``ax`` (shared with the comparison figures)."""
    L, H = bos_mass.shape
    im = ax.imshow(bos_mass, cmap="magma_r", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    if classes is not None and L * H <= 2000:
        for (l, h), c in np.ndenumerate(classes):
            if c in _MARKS:
                ax.text(h, l, _MARKS[c], ha="center", va="center", fontsize=7, color="white" if bos_mass[l, h] > 0.5 else "black")
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title(title, fontsize=10)
    ax.set_xticks(range(H) if H <= 32 else range(0, H, max(1, H // 16)))
    ax.set_yticks(range(0, L, 1 if L <= 32 else 2))
    ax.tick_params(labelsize=7)
    return im


def text_color_on(rgba) -> str:
    """Black or white, whichever reads on a cell of colour ``rgba`` (by relative luminance):
    black numbers on the dark end of a colour map were unreadable."""
    r, g, b = rgba[:3]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def save_heatmap(diag: Diagnosis, path: str | Path) -> Path:
    L, H = diag.shape
    fig, ax = plt.subplots(figsize=(max(5, 0.35 * H + 2.5), max(4, 0.25 * L + 1.5)))
    c = diag.summary()["counts"]
    q0 = "incl." if diag.settings["include_first_query"] else "excl."
    title = (f"{diag.model['name']}: BOS mass per head (query 0 {q0})\n"
             f"S BOS-sink {c['bos_sink']} · D DEAD {c['dead']} · e low-entropy {c['low_entropy']} · healthy {c['healthy']}")
    im = heatmap_axes(ax, diag.bos_mass, diag.classes, title)
    fig.colorbar(im, ax=ax, label="BOS mass (attention on position 0)")
    fig.tight_layout()
    return save_figure(fig, path)


def histogram_axes(ax, values: np.ndarray, label: str, color=None, alpha=0.75):
    ax.hist(values.ravel(), bins=np.linspace(0, 1, 41), alpha=alpha, label=label, color=color, edgecolor="white", linewidth=0.4)


def save_histogram(diag: Diagnosis, path: str | Path) -> Path:
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    histogram_axes(ax, diag.bos_mass, f"{diag.model['name']} ({diag.bos_mass.size} heads)")
    t = diag.thresholds
    for s in (0.4, 0.5, 0.6):
        if s != t.sink:
            ax.axvline(s, color="grey", ls=":", lw=1)
    ax.axvline(t.sink, color="grey", ls="--", lw=1)  # always drawn, also when not a sweep value
    ax.axvline(t.dead, color="black", ls="--", lw=1)
    sweep = diag.threshold_sweep()
    txt = "\n".join(f"sink>{k}: {v['bos_sink'] + v['dead']} collapsed" for k, v in sweep.items())
    ax.text(0.98, 0.95, txt, transform=ax.transAxes, ha="right", va="top", fontsize=8, family="monospace",
            bbox=dict(facecolor="white", alpha=0.8, edgecolor="none"))
    ax.set_xlabel("BOS mass")
    ax.set_ylabel("heads")
    # the model is named in the title, not a legend: a legend box hid the sweep text
    ax.set_title(f"{diag.model['name']} ({diag.bos_mass.size} heads): BOS-mass distribution\n"
                 "(dashed: sink and DEAD thresholds used; dotted: other sweep values)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)
