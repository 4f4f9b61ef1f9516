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
    progress: bool = False,
    label: str = "",
) -> tuple[dict, Diagnosis | None]:
    """``({train_ppl, heldout_ppl, other_ppl, targets_healthy, ...}, diagnosis)``.

    ``progress`` shows one bar over the phases (each perplexity set, the diagnosis) with each
    phase's own bar below it: on a real model an evaluation takes tens of seconds on a CPU,
    which must not look like a hang.
    """
    from tqdm.auto import tqdm

    start = time.perf_counter()
    row: dict = {}
    phases = [n for n, seqs in eval_sets.items() if seqs is not None and len(seqs)] + (["diagnosis"] if encoded_prompts else [])
    bar = tqdm(total=len(phases), desc=f"evaluating {label}".strip(), unit="part", leave=False, disable=not progress)
    for name, seqs in eval_sets.items():
        if seqs is not None and len(seqs):
            bar.set_postfix_str(f"{name} perplexity")
            row[f"{name}_ppl"] = round(perplexity(loaded.model, seqs, batch_size=batch_size, progress=progress).ppl, 4)
            bar.update(1)
    diag = None
    if encoded_prompts:
        bar.set_postfix_str("diagnosis")
        diag = diagnose_encoded(loaded, encoded_prompts, batch_size=4, progress=progress)
        bar.update(1)
    bar.close()
    if diag is not None:
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
