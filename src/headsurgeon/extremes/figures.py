"""Figures of the extreme-token study: norm curves, drain heatmap, dormancy by domain, interventions."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap, SymLogNorm, TwoSlopeNorm  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from headsurgeon.diagnosis.figures import heatmap_axes, text_color_on  # noqa: E402
from headsurgeon.figure_files import save_figure  # noqa: E402

from .dormancy import DORMANCY_CLASSES  # noqa: E402
from .result import ExtremesResult  # noqa: E402

_GROUP_STYLE = {"first": ("position 0", "C3", "-"), "later": ("later sink tokens", "C1", "--")}


def _save(fig, path) -> Path:
    for ax in fig.axes:
        if ax.get_xlabel() in ("layer", "residual index") or ax.get_xlabel().startswith("residual index"):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    return save_figure(fig, path)


def save_norm_curves(res: ExtremesResult, path: str | Path) -> Path:
    """Residual and value norms by layer for position 0, later sink tokens and the other tokens,
    and the largest massive dimension at position 0 against the median |activation|."""
    has_res, has_val = "resid_first" in res.per_prompt, "value_first" in res.per_prompt
    panels = int(has_res) * 2 + int(has_val)
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.0), squeeze=False)
    axes = list(axes[0])
    name = res.model["name"]
    if has_res:
        ax = axes.pop(0)
        x = np.arange(res.model["num_layers"] + 1)
        for g, (label, color, ls) in _GROUP_STYLE.items():
            norms = res.residual_norms(g)[0]
            if np.isfinite(norms).any():
                ax.plot(x, norms, ls, color=color, marker=".", label=label)
        ax.plot(x, res.residual_norms()[1], color="grey", marker=".", label="other tokens (median)")
        ax.set_yscale("log")
        ax.set_xlabel("residual index (0 = embedding output, i = after block i-1)")
        ax.set_ylabel("hidden-state L2 norm")
        ax.set_title(f"{name}: residual-state peak", fontsize=10)
        ax.legend(fontsize=8)
    if has_val:
        ax = axes.pop(0)
        x = np.arange(res.model["num_layers"])
        for g, (label, color, ls) in _GROUP_STYLE.items():
            norms = res.value_norms(g)[0]
            if np.isfinite(norms).any():
                ax.plot(x, norms, ls, color=color, marker=".", label=label)
        ax.plot(x, res.value_norms()[1], color="grey", marker=".", label="other tokens (median)")
        ax.set_yscale("log")
        ax.set_xlabel("layer")
        ax.set_ylabel("value-state L2 norm (mean over heads)")
        ax.set_title("value-state drain", fontsize=10)
        ax.legend(fontsize=8)
    if has_res:
        ax = axes.pop(0)
        dims = (res.massive_dims or {}).get("first") or []
        if dims:
            x = np.arange(len(dims))
            top = np.array([layer[0]["abs"] for layer in dims])
            ax.plot(x, top, color="C3", marker=".", label="largest |dim| at position 0")
            ax.plot(x, res.per_prompt["median_abs"].mean(0), color="grey", marker=".", label="median |activation| (all tokens)")
            peak = int(np.argmax(top))
            ax.annotate(f"dim {dims[peak][0]['dim']}", (peak, top[peak]), textcoords="offset points", xytext=(5, 5), fontsize=8)
            changes = [i for i in range(1, len(dims)) if dims[i][0]["dim"] != dims[i - 1][0]["dim"]]
            for i in changes[:6]:
                ax.annotate(f"{dims[i][0]['dim']}", (i, top[i]), textcoords="offset points", xytext=(0, -12), fontsize=7, color="C3")
            ax.set_yscale("log")
            ax.legend(fontsize=8)
        ax.set_xlabel("residual index")
        ax.set_ylabel("|activation|")
        ax.set_title("massive dimensions (labels: which dim)", fontsize=10)
    return _save(fig, path)


def save_drain_heatmap(res: ExtremesResult, path: str | Path) -> Path:
    """Per-head value-norm ratio (position 0 / other tokens; later sink tokens / other) on a log2 scale."""
    groups = [g for g in ("first", "later") if np.isfinite(res.drain_ratio(g)).any()]
    L, H = res.model["num_layers"], res.model["num_heads"]
    fig, axes = plt.subplots(1, len(groups), figsize=(max(4.5, 0.45 * H + 2.5) * len(groups), max(4, 0.25 * L + 1.5)), squeeze=False)
    for ax, g in zip(axes[0], groups):
        ratio = res.drain_ratio(g)
        logr = np.log2(np.clip(ratio, 1e-3, None))
        lim = max(1.0, float(np.nanmax(np.abs(logr))))
        im = ax.imshow(logr, cmap="RdBu", norm=TwoSlopeNorm(0.0, -lim, lim), aspect="auto", interpolation="nearest")
        if L * H <= 400:
            for (l, h), v in np.ndenumerate(ratio):
                if np.isfinite(v):
                    ax.text(h, l, f"{v:.2f}", ha="center", va="center", fontsize=5.5, color="white" if abs(logr[l, h]) > 0.6 * lim else "black")
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_xticks(range(H) if H <= 32 else range(0, H, max(1, H // 16)))
        ax.set_yticks(range(0, L, 1 if L <= 32 else 2))
        ax.tick_params(labelsize=7)
        label = _GROUP_STYLE[g][0]
        ax.set_title(f"value norm at {label} / median of other tokens\n(red < 1: drained; median {np.nanmedian(ratio):.2f})", fontsize=9)
        fig.colorbar(im, ax=ax, label="log2 ratio")
    if res.model["num_kv_heads"] != H:
        fig.suptitle(f"{res.model['name']}: grouped-query attention, heads of one KV group share a value state", fontsize=9)
    return _save(fig, path)


_CLASS_COLORS = {"always_active": "#4c9f70", "always_dormant": "#3b3b3b", "domain_dependent": "#d9822b", "borderline": "#c9c9c9"}


def save_dormancy(res: ExtremesResult, path: str | Path) -> Path:
    """The dormancy metric per domain (one heatmap each) and the resulting head classes."""
    metric = res.domain_metric()
    names = res.domain_names
    t = res.thresholds
    L, H = metric.shape[1:]
    n = len(names) + 1
    cols = min(n, 4)
    rows = int(np.ceil(n / cols))
    w = max(2.6, 0.28 * H + 1.2)
    fig, axes = plt.subplots(rows, cols, figsize=(w * cols + 1.2, max(3.2, 0.17 * L + 1.3) * rows), squeeze=False, layout="constrained")
    flat = list(axes.ravel())
    for ax, name, m in zip(flat, names, metric):
        im = heatmap_axes(ax, m, None, f"{name} (mean {m.mean():.2f})")
    fig.colorbar(im, ax=flat[: len(names)], label=f"{t.dormancy_metric} (dormant > {t.dormant_threshold})", shrink=0.5, aspect=30)
    ax = flat[len(names)]
    classes = res.dormancy_classes()
    codes = np.vectorize(DORMANCY_CLASSES.index)(classes)
    ax.imshow(codes, cmap=ListedColormap([_CLASS_COLORS[c] for c in DORMANCY_CLASSES]), vmin=-0.5, vmax=len(DORMANCY_CLASSES) - 0.5,
              aspect="auto", interpolation="nearest")
    counts = {c: int((classes == c).sum()) for c in DORMANCY_CLASSES}
    handles = [plt.Rectangle((0, 0), 1, 1, color=_CLASS_COLORS[c]) for c in DORMANCY_CLASSES]
    ax.legend(handles, [f"{c.replace('_', ' ')} ({counts[c]})" for c in DORMANCY_CLASSES], fontsize=7, loc="upper center",
              bbox_to_anchor=(0.5, -0.1), ncol=2)
    ax.set_title(f"classes (margin {t.margin})", fontsize=10)
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_xticks(range(H) if H <= 32 else range(0, H, max(1, H // 16)))
    ax.set_yticks(range(0, L, 1 if L <= 32 else 2))
    ax.tick_params(labelsize=7)
    for extra in flat[len(names) + 1 :]:
        extra.axis("off")
    fig.suptitle(f"{res.model['name']}: {t.dormancy_metric} per head by input domain", fontsize=11)
    return save_figure(fig, path)


def _table_heatmap(ax, values: np.ndarray, row_labels, col_labels, *, cmap, norm, fmt: str, marks=None):
    im = ax.imshow(values, cmap=cmap, norm=norm, aspect="auto", interpolation="nearest")
    for (i, j), v in np.ndenumerate(values):
        mark = marks[i, j] if marks is not None else ""
        ax.text(j, i, f"{v:{fmt}}{mark}", ha="center", va="center", fontsize=8, color=text_color_on(im.cmap(im.norm(v))))
    ax.set_xticks(range(len(col_labels)), col_labels, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(row_labels)), row_labels, fontsize=8)
    return im


def save_domain_dependent(res: ExtremesResult, path: str | Path, *, top: int = 15) -> Path:
    """The strongest domain-dependent heads: metric per domain (heads x domains)."""
    rows = res.domain_dependent()[:top]
    names = res.domain_names
    t = res.thresholds
    fig, ax = plt.subplots(figsize=(1.1 * len(names) + 3, 0.38 * max(len(rows), 1) + 1.8))
    if rows:
        vals = np.array([[r["values"][d] for d in names] for r in rows])
        labels = [f"{r['head']} (spread {r['spread']:.2f})" for r in rows]
        im = _table_heatmap(ax, vals, labels, names, cmap="magma_r", norm=plt.Normalize(0, 1), fmt=".2f")
        fig.colorbar(im, ax=ax, label=t.dormancy_metric)
    else:
        ax.text(0.5, 0.5, "no domain-dependent heads", ha="center", va="center")
        ax.axis("off")
    ax.set_title(f"strongest domain-dependent heads: dormant where {t.dormancy_metric} > {t.dormant_threshold}", fontsize=10)
    return _save(fig, path)


def save_interventions(res: ExtremesResult, path: str | Path) -> Path:
    """Loss change per domain for each intervened head (``*`` marks domains where it is dormant)."""
    iv = res.interventions
    names = iv["domains"]
    rows = iv["heads"]
    kinds = iv["kinds"]
    fig, axes = plt.subplots(1, len(kinds), figsize=((1.0 * len(names) + 3.2) * len(kinds), 0.45 * max(len(rows), 1) + 2.2), squeeze=False)
    thr = res.thresholds.dormant_threshold
    for ax, kind in zip(axes[0], kinds):
        if not rows:
            ax.text(0.5, 0.5, "no heads intervened on", ha="center", va="center")
            ax.axis("off")
            continue
        vals = np.array([[r[kind][d] for d in names] for r in rows])
        marks = np.array([["*" if r["activity"][d] > thr else "" for d in names] for r in rows])
        lim = max(float(np.abs(vals).max()), 0.02)
        labels = [f"{r['head']} {r['role'].replace('_', ' ')}" for r in rows]
        # symmetric log scale: one disrupted head (change of nats) must not wash out the small ones
        norm = SymLogNorm(linthresh=0.01, vmin=-lim, vmax=lim, base=10)
        im = _table_heatmap(ax, vals, labels, names, cmap="PuOr_r", norm=norm, fmt="+.3f", marks=marks)
        fig.colorbar(im, ax=ax, label="loss change (nats/token, symlog)")
        title = "zero the head's output" if kind == "zero" else "remove attention to the sink, renormalise"
        ax.set_title(f"{title}\n(* = head dormant on that domain)", fontsize=9)
    fig.suptitle(f"{res.model['name']}: loss change per domain", fontsize=11)
    return _save(fig, path)
