"""What a study measures on one run, and the per-run summary the statistics are made from.

At the end of each training run (:func:`end_measures`):

* **functional importance** of the arm's heads: the loss increase (nats/token) when they are
  ablated together, on the seed's held-out sequences, in the trained model and in the stock
  model (the stock value comes from the seed's stock reference);
* **drift of untouched heads**: |BOS mass after - BOS mass stock| for every head the arm did not
  train (for LoRA: every head outside the targets, although LoRA changes whole projections of
  the targets' layers); a head drifts when that exceeds the threshold (0.05, as in the paper).

From the run manifest (:func:`summarize_run`): the curves (training loss, train / held-out /
other-distribution perplexity, fraction of the arm's heads that are healthy, per evaluation),
the best point (lowest held-out perplexity over all evaluations, step 0 included, which is the
checkpoint ``operate`` keeps as ``models/best``) with where it was (step, tokens, epoch), the
best training-corpus perplexity (the paper's metric, with its own step), the final values,
re-collapse, why the run stopped (patience, cap, or the seed's budget) and where, and compute
time (training seconds plus evaluation seconds, both summed over resumed sessions).
"""

from __future__ import annotations

import math
from pathlib import Path

from headsurgeon.diagnosis import Diagnosis
from headsurgeon.evaluation.drift import zone_masks, zone_stats
from headsurgeon.measurements import ablation_effects
from headsurgeon.models import LoadedModel
from headsurgeon.models.adapters import HeadRef
from headsurgeon.surgery.training_run import recollapsed_targets

#: Scalars per run, with the direction that is better (None: descriptive only).
SCALARS: dict[str, str | None] = {
    "heldout_ppl_best": "lower",
    "heldout_best_vs_stock": "lower",
    "best_step": None,
    "best_tokens": None,
    "best_epoch": None,
    "other_ppl_at_best": "lower",
    "train_ppl_at_best": "lower",
    "train_ppl_best": "lower",
    "train_best_vs_stock": "lower",
    "train_at_best_vs_stock": "lower",
    "train_best_step": None,
    "train_best_epoch": None,
    "other_at_best_vs_stock": "lower",
    "heldout_ppl_final": "lower",
    "other_ppl_final": "lower",
    "train_ppl_final": "lower",
    "recovery_final": "higher",
    "recollapsed": "lower",
    "ablation_delta_final": None,
    "ablation_delta_stock": None,
    "ablation_gain": None,
    "drift_count": "lower",
    "drift_mean_abs": "lower",
    "trainable_parameters": None,
    "compute_seconds": "lower",
    "stop_step": None,
    "final_step": None,
    "budget_steps": None,
}
CURVES = ("train_loss", "train_loss_mean", "train_ppl", "heldout_ppl", "other_ppl", "train_vs_stock", "heldout_vs_stock", "other_vs_stock", "recovery")


def heads_of(plan_doc: dict) -> list[HeadRef]:
    return sorted(HeadRef(int(l), int(h)) for l, hs in plan_doc["targets"].items() for h in hs)


def drift(stock: Diagnosis, final: Diagnosis, trained: list[HeadRef], threshold: float) -> dict:
    """Drift of the heads outside ``trained``: count over the threshold and mean |delta|
    (the comparison's own zone arithmetic, :func:`headsurgeon.evaluation.drift.zone_stats`)."""
    outside = zone_masks(tuple(stock.bos_mass.shape), trained, [])["outside_zone"]
    z = zone_stats(final.bos_mass - stock.bos_mass, outside, threshold)
    return {"drift_count": z["drifting"], "drift_fraction": z["drifting_fraction"], "drift_mean_abs": z["mean_abs_delta"],
            "untouched_heads": z["heads"], "threshold": threshold}


def end_measures(loaded: LoadedModel, heldout, heads: list[HeadRef], *, stock_delta: float, stock_diag: Diagnosis,
                 final_diag: Diagnosis | None, threshold: float, batch_size: int = 4) -> dict:
    """Ablation of ``heads`` in the trained model (vs stock) and drift of the other heads."""
    ab = ablation_effects(loaded, heldout, {"heads": heads}, batch_size=batch_size)
    out = {"ablation_delta_final": ab.delta["heads"], "ablation_delta_stock": stock_delta,
           "ablation_gain": ab.delta["heads"] - stock_delta, "base_loss_final": ab.base_loss, "ablation_tokens": ab.tokens}
    if final_diag is not None:
        out.update(drift(stock_diag, final_diag, heads, threshold))
    return out


def _ratio(a, b):
    """``a / b`` (a perplexity relative to the same seed's stock value), or ``None``."""
    return None if a is None or not b else a / b


def _f(v):
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else v


def _argmin(hist: list[dict], key: str) -> int | None:
    vals = [(r[key], i) for i, r in enumerate(hist) if r.get(key) is not None and math.isfinite(r[key])]
    return min(vals)[1] if vals else None


def summarize_run(arm: str, seed: int, manifest: dict, measures: dict, *, run_dir: str | None, reused: bool,
                  budget: dict | None = None) -> dict:
    """One row of the study: curves and scalars of a finished training run (``budget``: the seed's)."""
    hist = manifest["history"]
    heads = [str(h) for h in heads_of(manifest["plan"])]
    n = len(heads)
    curves: dict[str, list] = {"step": [r["step"] for r in hist], "tokens": [r.get("tokens", 0) for r in hist],
                               "epoch": [r.get("epoch", 0.0) for r in hist]}
    for key in ("train_loss", "train_loss_mean", "train_ppl", "heldout_ppl", "other_ppl"):
        curves[key] = [_f(r.get(key)) for r in hist]
    curves["recovery"] = [None if r.get("targets_healthy") is None else r["targets_healthy"] / n for r in hist]
    stock = manifest.get("stock") or {}
    for key, name in (("train_ppl", "train_vs_stock"), ("heldout_ppl", "heldout_vs_stock"), ("other_ppl", "other_vs_stock")):
        curves[name] = [_ratio(v, stock.get(key)) for v in curves[key]]
    best_i = _argmin(hist, "heldout_ppl")
    best_i = len(hist) - 1 if best_i is None else best_i
    train_i = _argmin(hist, "train_ppl")
    stopping = manifest.get("stopping") or {}
    others = [r["other_ppl"] for r in hist if r.get("other_ppl") is not None]
    last = hist[-1]
    eval_s = sum(r.get("eval_seconds", 0.0) for r in hist) + (manifest.get("stock") or {}).get("eval_seconds", 0.0)
    scalars = {
        "heldout_ppl_best": _f(hist[best_i].get("heldout_ppl")),
        "best_step": hist[best_i]["step"],
        "best_tokens": hist[best_i].get("tokens", 0),
        "best_epoch": hist[best_i].get("epoch", 0.0),
        "heldout_best_vs_stock": curves["heldout_vs_stock"][best_i],
        "train_ppl_at_best": _f(hist[best_i].get("train_ppl")),
        "train_at_best_vs_stock": curves["train_vs_stock"][best_i],
        "train_ppl_best": None if train_i is None else _f(hist[train_i]["train_ppl"]),
        "train_best_vs_stock": None if train_i is None else curves["train_vs_stock"][train_i],
        "train_best_step": None if train_i is None else hist[train_i]["step"],
        "train_best_epoch": None if train_i is None else hist[train_i].get("epoch", 0.0),
        "stop_step": stopping.get("step", last["step"]),
        "final_step": last["step"],
        "budget_steps": None if budget is None else budget["steps"],
        "other_ppl_at_best": _f(hist[best_i].get("other_ppl")),
        "other_at_best_vs_stock": curves["other_vs_stock"][best_i],
        "other_ppl_min": min(others) if others else None,
        "heldout_ppl_final": _f(last.get("heldout_ppl")),
        "other_ppl_final": _f(last.get("other_ppl")),
        "train_ppl_final": _f(last.get("train_ppl")),
        "recovery_final": curves["recovery"][-1],
        "recollapsed": len(recollapsed_targets(hist, heads)),
        "trainable_parameters": manifest.get("trainable_parameters"),
        "train_seconds": manifest["timing"].get("train_seconds"),
        "eval_seconds": eval_s,
        "compute_seconds": (manifest["timing"].get("train_seconds") or 0.0) + eval_s,
        "tokens_per_second": manifest["timing"].get("tokens_per_second"),
        **{k: v for k, v in measures.items() if k in SCALARS or k.startswith("drift") or k.startswith("ablation")},
    }
    stop_reason = stopping.get("reason", "cap")
    return {"arm": arm, "seed": seed, "run_dir": run_dir, "reused": reused, "heads": heads, "curves": curves, "scalars": scalars,
            "lora": manifest.get("lora"), "outcome": manifest.get("outcome"),
            "stopping": {"reason": stop_reason, "step": scalars["stop_step"], "final_step": last["step"],
                         "patience": stopping.get("patience"), "cap": stopping.get("cap"),
                         "budget_steps": scalars["budget_steps"], "best_step": scalars["best_step"],
                         "best_tokens": scalars["best_tokens"], "best_epoch": scalars["best_epoch"]}}


def summarize_stock(seed: int, reference: dict, targets: list[str]) -> dict:
    """The stock arm's row for one seed: reference values, no training (one point per curve)."""
    row = reference["row"]
    rec = None if row.get("targets_healthy") is None else row["targets_healthy"] / len(targets)
    other = None if row.get("other_ppl") is None else 1.0
    train = None if row.get("train_ppl") is None else 1.0
    curves = {"step": [0], "tokens": [0], "epoch": [0.0], "train_loss": [None], "train_loss_mean": [None], "train_ppl": [row.get("train_ppl")],
              "heldout_ppl": [row.get("heldout_ppl")], "other_ppl": [row.get("other_ppl")], "train_vs_stock": [train],
              "heldout_vs_stock": [1.0], "other_vs_stock": [other], "recovery": [rec]}
    scalars = {
        "heldout_ppl_best": row.get("heldout_ppl"), "heldout_best_vs_stock": 1.0, "best_step": 0, "best_tokens": 0, "best_epoch": 0.0,
        "train_ppl_at_best": row.get("train_ppl"), "train_at_best_vs_stock": train, "train_ppl_best": row.get("train_ppl"),
        "train_best_vs_stock": train, "train_best_step": 0, "train_best_epoch": 0.0, "stop_step": 0, "final_step": 0, "budget_steps": None,
        "other_ppl_at_best": row.get("other_ppl"), "other_at_best_vs_stock": other,
        "other_ppl_min": row.get("other_ppl"), "heldout_ppl_final": row.get("heldout_ppl"), "other_ppl_final": row.get("other_ppl"),
        "train_ppl_final": row.get("train_ppl"), "recovery_final": rec, "recollapsed": 0, "trainable_parameters": 0,
        "ablation_delta_final": reference["ablation"]["targets"], "ablation_delta_stock": reference["ablation"]["targets"],
        "ablation_gain": 0.0, "drift_count": 0, "drift_mean_abs": 0.0,
        "compute_seconds": reference.get("seconds"), "train_seconds": 0.0, "eval_seconds": reference.get("seconds"),
    }
    return {"arm": "stock", "seed": seed, "run_dir": reference.get("dir"), "reused": reference.get("reused", False), "heads": targets,
            "curves": curves, "scalars": scalars, "lora": None, "outcome": None, "stopping": None}


def final_diagnosis(run_dir: Path, manifest: dict) -> Diagnosis | None:
    rel = manifest["history"][-1].get("diagnosis")
    return Diagnosis.load(run_dir / rel) if rel else None
