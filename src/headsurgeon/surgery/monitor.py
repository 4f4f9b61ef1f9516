"""Evaluation during surgery: perplexity on three text sets and a re-diagnosis of every head.

Run in fp32 and eval mode whatever the training precision, so numbers are comparable with
the stock model's. Each evaluation yields one history row for the manifest and (optionally)
one full :class:`~headsurgeon.diagnosis.Diagnosis`, written to ``diagnoses/`` so the comparison
tools can follow every head's BOS mass over the run.
"""

from __future__ import annotations

import time

import torch

from headsurgeon.diagnosis import COLLAPSED, Diagnosis, diagnose_encoded
from headsurgeon.measurements.perplexity import perplexity
from headsurgeon.models import LoadedModel
from headsurgeon.prompts.encoding import EncodedPrompt

from .plan import SurgeryPlan


def evaluate_state(
    loaded: LoadedModel,
    eval_sets: dict[str, torch.Tensor],
    encoded_prompts: list[EncodedPrompt] | None,
    plan: SurgeryPlan,
    *,
    batch_size: int,
) -> tuple[dict, Diagnosis | None]:
    """``({train_ppl, heldout_ppl, other_ppl, targets_healthy, ...}, diagnosis)``."""
    start = time.perf_counter()
    row: dict = {}
    for name, seqs in eval_sets.items():
        if seqs is not None and len(seqs):
            row[f"{name}_ppl"] = round(perplexity(loaded.model, seqs, batch_size=batch_size).ppl, 4)
    diag = None
    if encoded_prompts:
        diag = diagnose_encoded(loaded, encoded_prompts, batch_size=4, progress=False)
        row.update(diagnosis_fields(diag, plan))
    row["eval_seconds"] = time.perf_counter() - start
    return row, diag


def diagnosis_fields(diag: Diagnosis, plan: SurgeryPlan) -> dict:
    """The row's entries that come from a diagnosis, for ``plan``'s targets.

    One function, so that a stock row assembled from a study's shared stock evaluation (one
    diagnosis and one set of perplexities per seed, reused by every arm) is the row
    :func:`evaluate_state` would have computed for that arm."""
    cls = diag.classes
    collapsed = [str(h) for h in plan.targets if cls[h.layer, h.head] in COLLAPSED]
    return {"targets_healthy": len(plan.targets) - len(collapsed), "targets_collapsed": collapsed,
            "target_bos_mass_mean": round(float(sum(diag.bos_mass[h.layer, h.head] for h in plan.targets) / len(plan.targets)), 4),
            "model_counts": diag.counts()}
