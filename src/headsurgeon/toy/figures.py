"""Figures of the toy lab (matplotlib, Agg backend, written atomically as PNG).

Two views: the dynamics of one run (losses, attention on BOS, BOS attention logit, value norms,
residual norms per layer), and the side-by-side comparison of variants (softmax+AdamW, ReLU
attention, SGD) with a shared y-axis per row so the differences read at a glance.
Every panel is about the run's *copy head* (see ``dynamics.summarize``).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

_LAYER_COLORS = ("tab:gray", "tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")


def _save(fig, path: str | Path) -> Path:
    from headsurgeon.figure_files import save_figure

    return save_figure(fig, path, tight=True)


def _panels(axes, run, *, with_titles: bool = True) -> None:
    """Draw the five dynamics panels of ``run`` (a ToyRunResult) on ``axes``."""
    d, n_layers = run.dynamics, run.config.n_layers
    steps = d["step"]
    k = run.summary["copy_head"] + "."
    ax = axes[0]
    ax.plot(steps, d["loss_nontrigger"], label="non-trigger", color="tab:blue")
    ax.plot(steps, d["loss_trigger"], label="trigger", color="tab:red")
    ax.set_ylabel("loss (nats)")
    ax = axes[1]
    ax.plot(steps, d[k + "bos_attn_nontrigger"], label="on BOS, non-trigger", color="tab:blue")
    ax.plot(steps, d[k + "bos_attn_trigger"], label="on BOS, trigger", color="tab:red")
    ax.plot(steps, d[k + "copy_attn_trigger"], label="on copy source, trigger",
            color="tab:red", linestyle="--")
    ax.set_ylabel("attention weight")
    top = max([1.0] + [v for v in d[k + "copy_attn_trigger"] if v == v])  # ReLU rows can exceed 1
    ax.set_ylim(-0.03, max(1.03, ax.get_ylim()[1], 1.03 * top))
    ax = axes[2]
    ax.plot(steps, d[k + "bos_logit_gap"], color="tab:purple", label="BOS - mean other")
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_ylabel("BOS attention logit gap")
    ax = axes[3]
    ax.plot(steps, d[k + "value_norm_bos"], label="BOS", color="tab:purple")
    ax.plot(steps, d[k + "value_norm_other"], label="others", color="tab:gray")
    ax.set_ylabel("value-state norm")
    ax = axes[4]
    for layer in range(1, n_layers + 1):
        color = _LAYER_COLORS[layer % len(_LAYER_COLORS)]
        ratio = [b / o for b, o in zip(d[f"res{layer}.norm_bos"], d[f"res{layer}.norm_other"])]
        ax.plot(steps, ratio, color=color, label=f"after layer {layer}")
    ax.axhline(1, color="black", linewidth=0.5)
    ax.set_ylabel("residual norm BOS / others")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    axes[-1].set_xlabel("training step")


def plot_dynamics(run, path: str | Path) -> Path:
    """One run: five stacked panels over training steps."""
    fig, axes = plt.subplots(5, 1, figsize=(7, 12), sharex=True, layout="constrained")
    c = run.config
    fig.suptitle(f"Bigram-Backcopy, {c.n_layers} layer(s), {c.attention} attention, "
                 f"{c.optimizer} lr {c.lr:g} (copy head {run.summary['copy_head']})", fontsize=10)
    _panels(axes, run)
    return _save(fig, path)


def plot_compare(runs: dict, path: str | Path) -> Path:
    """Variants side by side (columns), the five panels as rows, y shared across a row."""
    names = list(runs)
    fig, axes = plt.subplots(5, len(names), figsize=(4.2 * len(names), 12), sharex="col",
                             sharey="row", squeeze=False, layout="constrained")
    for j, name in enumerate(names):
        run = runs[name]
        _panels(axes[:, j], run)
        c = run.config
        axes[0, j].set_title(f"{name}\n{c.attention} attention, {c.optimizer} lr {c.lr:g}",
                             fontsize=10)
        if j:
            for ax in axes[:, j]:
                ax.set_ylabel("")
    first = runs[names[0]].config
    fig.suptitle(f"Bigram-Backcopy: {first.n_layers} layer(s), dim {first.dim}, "
                 f"length {first.seq_len}, batch {first.batch_size}", fontsize=11)
    return _save(fig, path)
