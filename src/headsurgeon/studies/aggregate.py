"""From per-run rows to per-arm statistics, curves with bands, and the verdict table.

The claims and exactly what "beats" means (see also :mod:`.stats`):

==========================  ===================  =============================================
claim                       arms (arm vs ref.)   primary metric (better)
==========================  ===================  =============================================
re-init is needed for       surgery vs           fraction of the targets healthy at the last
recovery                    no_reinit            evaluation (higher)
surgery beats training the  surgery vs           held-out perplexity of the training
same slices without re-init no_reinit            distribution at the best point (lower)
surgery on collapsed heads  surgery vs           same
beats surgery on random     random_healthy
healthy heads
surgery beats the matched   surgery vs lora      same
LoRA
==========================  ===================  =============================================

"Beats" = the bootstrap CI of the mean paired (by seed) difference excludes 0 on the favourable
side. Secondary rows (other-distribution perplexity at that best point, final perplexity, the
targets' ablation effect) are tested the same way and shown, but the claim's verdict is its
primary metric's.
"""

from __future__ import annotations

from .measure import CURVES, SCALARS
from .stats import Stats, Verdict, paired_verdict, summarize

#: (claim id, wording, arm, reference, [(metric, better), ...] primary first)
CLAIMS: list[tuple[str, str, str, str, list[tuple[str, str]]]] = [
    ("reinit_needed", "re-init is needed for recovery", "surgery", "no_reinit",
     [("recovery_final", "higher"), ("ablation_delta_final", "higher")]),
    ("surgery_vs_no_reinit", "surgery beats training the same slices without re-init", "surgery", "no_reinit",
     [("heldout_ppl_best", "lower"), ("other_ppl_at_best", "lower"), ("heldout_ppl_final", "lower")]),
    ("collapsed_vs_random", "surgery on collapsed heads beats surgery on random healthy heads", "surgery", "random_healthy",
     [("heldout_ppl_best", "lower"), ("other_ppl_at_best", "lower"), ("heldout_ppl_final", "lower")]),
    ("surgery_vs_lora", "surgery beats the matched LoRA", "surgery", "lora",
     [("heldout_ppl_best", "lower"), ("other_ppl_at_best", "lower"), ("heldout_ppl_final", "lower")]),
    ("surgery_other_vs_stock", "surgery leaves the other distribution better than stock", "surgery", "stock",
     [("other_ppl_at_best", "lower"), ("other_ppl_final", "lower")]),
]
#: Claims against a fixed multiple of the same seed's stock value: (claim id, wording, arm,
#: ratio to stock the arm must beat, [(ratio metric, better), ...] primary first). The paper
#: reports extended surgery at 12.70 training PPL against 16.99 stock (25% lower) at its best point.
THRESHOLD_CLAIMS: list[tuple[str, str, str, float, list[tuple[str, str]]]] = [
    ("extended_train_25pct", "extended surgery beats stock by 25% on training-corpus perplexity (the paper's claim)", "extended", 0.75,
     [("train_best_vs_stock", "lower"), ("train_at_best_vs_stock", "lower")]),
]

METRIC_LABELS = {
    "heldout_ppl_best": "held-out PPL (training distribution) at the best point",
    "heldout_best_vs_stock": "held-out PPL at the best point / stock (same seed)",
    "other_ppl_at_best": "other-distribution PPL at that point",
    "other_at_best_vs_stock": "other-distribution PPL there / stock (same seed)",
    "best_tokens": "training tokens at the best point",
    "best_epoch": "epoch of the best point",
    "train_ppl_at_best": "training-corpus PPL at the best point",
    "train_at_best_vs_stock": "training-corpus PPL at the best point / stock",
    "train_ppl_best": "best training-corpus PPL (the paper's metric)",
    "train_best_vs_stock": "best training-corpus PPL / stock (same seed)",
    "train_best_step": "step of the best training-corpus PPL",
    "train_best_epoch": "epoch of the best training-corpus PPL",
    "stop_step": "step where the arm stopped on its own (patience or cap)",
    "final_step": "last step trained (the seed's budget)",
    "budget_steps": "the seed's budget (steps)",
    "heldout_ppl_final": "held-out PPL at the end",
    "other_ppl_final": "other-distribution PPL at the end",
    "train_ppl_final": "training-set PPL at the end",
    "recovery_final": "fraction of the arm's heads healthy at the end",
    "ablation_delta_final": "loss increase when the arm's heads are ablated (nats/token)",
    "ablation_delta_stock": "same heads ablated in the stock model",
    "ablation_gain": "ablation effect gained over stock",
    "drift_count": "untouched heads drifting (|delta BOS| > threshold)",
    "drift_mean_abs": "mean |delta BOS| of untouched heads",
    "recollapsed": "heads that re-collapsed during training",
    "best_step": "step of the best point",
    "trainable_parameters": "trainable parameters",
    "compute_seconds": "compute time (train + eval, s)",
}


def arm_stats(runs: list[dict], *, level: float, n_boot: int) -> dict[str, dict[str, Stats]]:
    """``{arm: {scalar: Stats over seeds}}`` for every scalar in :data:`SCALARS`."""
    out: dict[str, dict[str, Stats]] = {}
    for arm in dict.fromkeys(r["arm"] for r in runs):
        rows = [r for r in runs if r["arm"] == arm]
        out[arm] = {k: summarize([r["scalars"].get(k) for r in rows], level=level, n_boot=n_boot) for k in SCALARS}
    return out


def arm_curves(runs: list[dict]) -> dict[str, dict[str, dict]]:
    """``{arm: {curve: {step, mean, low, high, n}}}``: mean and min-max band over seeds at each step."""
    out: dict[str, dict[str, dict]] = {}
    for arm in dict.fromkeys(r["arm"] for r in runs):
        rows = [r for r in runs if r["arm"] == arm]
        steps = sorted({s for r in rows for s in r["curves"]["step"]})
        out[arm] = {}
        for key in CURVES:
            mean, low, high, ns = [], [], [], []
            for s in steps:
                vals = [r["curves"][key][r["curves"]["step"].index(s)] for r in rows if s in r["curves"]["step"]]
                vals = [v for v in vals if v is not None]
                ns.append(len(vals))
                mean.append(sum(vals) / len(vals) if vals else None)
                low.append(min(vals) if vals else None)
                high.append(max(vals) if vals else None)
            out[arm][key] = {"step": steps, "mean": mean, "low": low, "high": high, "n": ns}
    return out


def _measured(by_arm: dict, arms: tuple[str, ...], metric: str) -> bool:
    return any(all(by_arm[a].get(s, {}).get(metric) is not None for a in arms) for s in by_arm[arms[0]])


def verdicts(runs: list[dict], *, level: float, n_boot: int) -> list[Verdict]:
    """Every claim whose two arms both ran and whose primary metric was measured, primary metric first
    (without an other corpus, the claim about the other distribution is left out)."""
    by_arm: dict[str, dict[int, dict]] = {}
    for r in runs:
        by_arm.setdefault(r["arm"], {})[r["seed"]] = r["scalars"]
    out: list[Verdict] = []
    for claim, text, arm, ref, metrics in CLAIMS:
        if arm not in by_arm or ref not in by_arm or not _measured(by_arm, (arm, ref), metrics[0][0]):
            continue
        for i, (metric, better) in enumerate(metrics):
            a = {s: v.get(metric) for s, v in by_arm[arm].items()}
            b = {s: v.get(metric) for s, v in by_arm[ref].items()}
            out.append(paired_verdict(claim=claim, text=text, metric=metric, better=better, arm=arm, reference=ref,
                                      arm_values=a, reference_values=b, level=level, n_boot=n_boot, primary=i == 0))
    for claim, text, arm, ratio, metrics in THRESHOLD_CLAIMS:
        if arm not in by_arm or "stock" not in by_arm or not _measured(by_arm, (arm,), metrics[0][0]):
            continue
        for i, (metric, better) in enumerate(metrics):
            a = {s: v.get(metric) for s, v in by_arm[arm].items()}
            out.append(paired_verdict(claim=claim, text=text, metric=metric, better=better, arm=arm, reference=f"{ratio:g} x stock",
                                      arm_values=a, reference_values={s: ratio for s in a}, level=level, n_boot=n_boot,
                                      primary=i == 0))
    return out
