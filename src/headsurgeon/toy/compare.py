"""Train one base config as three variants and put them side by side.

The variants isolate the two causes the paper names: ``relu`` swaps only the attention
normalisation (softmax -> relu(scores)/n_visible), ``sgd`` swaps only the optimiser (AdamW ->
SGD with momentum at ``sgd_lr``, since SGD needs a much larger rate to move at all, and the
weight decay rescaled to the same per-step shrink). Task,
seed, model size, steps and evaluation batch are shared, so differences are the variant's.
"""

from __future__ import annotations

from pathlib import Path

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.toy.config import ToyConfig
from headsurgeon.toy.dynamics import DynamicsThresholds
from headsurgeon.toy.results import ToyCompareResult
from headsurgeon.toy.task import BigramBackcopy
from headsurgeon.toy.train import task_for, train

VARIANTS = ("softmax-adamw", "relu-adamw", "softmax-sgd")


def variant_config(base: ToyConfig, name: str) -> ToyConfig:
    """The config of variant ``name`` derived from ``base``."""
    if name == "softmax-adamw":
        return base.replace(attention="softmax", optimizer="adamw")
    if name == "relu-adamw":
        return base.replace(attention="relu", optimizer="adamw")
    if name == "softmax-sgd":
        # torch's SGD weight decay is coupled (shrink lr * wd per step), AdamW's is decoupled
        # (also lr * wd): rescale so both shrink the weights by the same factor per step.
        wd = base.weight_decay * base.lr / base.sgd_lr if base.optimizer == "adamw" else base.weight_decay
        return base.replace(attention="softmax", optimizer="sgd", lr=base.sgd_lr, weight_decay=wd)
    raise HeadsurgeonError(f"unknown toy variant {name!r}; choose from {', '.join(VARIANTS)}")


def compare_variants(base: ToyConfig, *, out_dir: str | Path | None = None,
            variants: tuple[str, ...] = VARIANTS, progress: bool = True,
            task: BigramBackcopy | None = None,
            thresholds: DynamicsThresholds = DynamicsThresholds()) -> ToyCompareResult:
    """Train every variant of ``base``; with ``out_dir``, write each run into
    ``out_dir/<variant>/`` plus ``compare.png`` and ``toy_compare.json`` at the top."""
    from headsurgeon.toy.figures import plot_compare

    if not variants:
        raise HeadsurgeonError("no variants to compare; name at least one of " + ", ".join(VARIANTS))
    configs = {name: variant_config(base, name) for name in variants}
    if out_dir is not None:
        from headsurgeon.io import ensure_output_dir

        ensure_output_dir(out_dir)  # before the first variant trains
    task = task or task_for(base)
    runs = {}
    for name, cfg in configs.items():
        sub = Path(out_dir) / name if out_dir is not None else None
        runs[name] = train(cfg, out_dir=sub, progress=progress, task=task, label=name,
                           thresholds=thresholds)
    result = ToyCompareResult(base=base, runs=runs)
    if out_dir is not None:
        png = Path(out_dir) / "compare.png"
        result.files["png"] = str(plot_compare(runs, png))
        result.write(out_dir)
    return result
