"""Loss changes under head interventions, per domain, and what they say about dormancy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.stats import spearmanr
from tqdm.auto import tqdm

from headsurgeon.models import LoadedModel
from headsurgeon.models.adapters import HeadRef
from headsurgeon.prompts.encoding import EncodedPrompt, batches

from .interventions import remove_sink_attention, zero_heads
from .measure import token_losses

KINDS = ("zero", "remove_sink")


@torch.no_grad()
def intervened_losses(
    loaded: LoadedModel,
    encoded: list[EncodedPrompt],
    sink_positions: Sequence[Sequence[int]],
    head: HeadRef,
    kind: str,
    *,
    batch_size: int,
) -> list[np.ndarray]:
    """Per-prompt token losses with one intervention on one head (``kind`` in :data:`KINDS`).

    ``sink_positions[i]`` are the key positions removed for prompt i under ``remove_sink``.
    """
    device = next(loaded.model.parameters()).device
    out: list[np.ndarray | None] = [None] * len(encoded)
    for batch in batches(encoded, batch_size=batch_size, pad_id=loaded.tokenizer.pad_token_id):
        if kind == "zero":
            ctx = zero_heads(loaded.adapter, [head])
        else:
            ctx = remove_sink_attention(loaded.adapter, [head], [list(sink_positions[i]) for i in batch.indices])
        with ctx:
            logits = loaded.model(input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device), use_cache=False).logits
        for i, loss in zip(batch.indices, token_losses(logits, batch)):
            out[i] = loss
    return out


def domain_loss(losses: Sequence[np.ndarray], domains: Sequence[str], names: Sequence[str]) -> dict[str, float]:
    """Mean token loss per domain (token-weighted)."""
    return {d: float(np.concatenate([l for l, dd in zip(losses, domains) if dd == d]).mean()) for d in names}


def run_interventions(
    loaded: LoadedModel,
    encoded: list[EncodedPrompt],
    base_losses: list[np.ndarray],
    sink_positions: Sequence[Sequence[int]],
    heads: list[tuple[HeadRef, str]],
    activity: dict[str, np.ndarray],
    *,
    domain_names: list[str],
    threshold: float,
    batch_size: int = 4,
    progress: bool = True,
) -> dict:
    """Loss change per domain for each (head, role) under each intervention, plus a summary.

    ``activity[domain]`` is the ``[L, H]`` dormancy metric per domain (to label each cell
    dormant or active); ``base_losses`` are the un-intervened per-prompt token losses.
    """
    doms = [e.prompt.domain for e in encoded]
    base = domain_loss(base_losses, doms, domain_names)
    rows = []
    bar = tqdm(total=len(heads) * len(KINDS), desc="interventions", unit="run", disable=not progress, leave=False)
    was_training = loaded.model.training
    loaded.model.eval()  # no dropout: the loss changes must come from the intervention alone
    try:
        for ref, role in heads:
            row = {"head": str(ref), "layer": ref.layer, "index": ref.head, "role": role,
                   "activity": {d: round(float(activity[d][ref.layer, ref.head]), 4) for d in domain_names}}
            for kind in KINDS:
                losses = intervened_losses(loaded, encoded, sink_positions, ref, kind, batch_size=batch_size)
                after = domain_loss(losses, doms, domain_names)
                row[kind] = {d: round(after[d] - base[d], 6) for d in domain_names}
                bar.update(1)
            rows.append(row)
    finally:
        bar.close()
        loaded.model.train(was_training)
    tokens = {d: int(sum(len(l) for l, dd in zip(base_losses, doms) if dd == d)) for d in domain_names}
    return {
        "kinds": list(KINDS),
        "domains": domain_names,
        "prompts": {d: doms.count(d) for d in domain_names},
        "tokens": tokens,
        "base_loss": {d: round(v, 6) for d, v in base.items()},
        "heads": rows,
        "summary": summarise_effects(rows, domain_names, threshold),
    }


def summarise_effects(rows: list[dict], domain_names: list[str], threshold: float) -> dict:
    """Does a head matter less where it is dormant? For each intervention: mean loss change over
    (head, domain) cells where the head is dormant vs active, the same restricted to
    domain-dependent heads (a within-head comparison), and the Spearman correlation between
    activity metric and loss change over all cells."""
    out = {}
    for kind in KINDS:
        cells = [(r["activity"][d], r[kind][d], r["role"]) for r in rows for d in domain_names]
        if not cells:
            continue
        act = np.array([c[0] for c in cells])
        delta = np.array([c[1] for c in cells])
        dep = np.array([c[2] == "domain_dependent" for c in cells])
        dormant = act > threshold

        def mean(mask):
            return round(float(delta[mask].mean()), 6) if mask.any() else None

        rho = spearmanr(act, delta).statistic if len(cells) > 2 and np.ptp(act) > 0 and np.ptp(delta) > 0 else float("nan")
        out[kind] = {
            "mean_delta_dormant": mean(dormant),
            "mean_delta_active": mean(~dormant),
            "dependent_mean_delta_dormant": mean(dormant & dep),
            "dependent_mean_delta_active": mean(~dormant & dep),
            "dependent_heads_larger_when_active": _within_head(rows, domain_names, kind, threshold),
            "spearman_activity_vs_delta": None if np.isnan(rho) else round(float(rho), 4),
            "cells": len(cells),
        }
    return out


def _within_head(rows: list[dict], domain_names: list[str], kind: str, threshold: float) -> str | None:
    """``"k of n"``: domain-dependent heads whose mean loss change on their active domains
    exceeds that on their dormant domains."""
    n = k = 0
    for r in rows:
        if r["role"] != "domain_dependent":
            continue
        act = [r[kind][d] for d in domain_names if r["activity"][d] <= threshold]
        dor = [r[kind][d] for d in domain_names if r["activity"][d] > threshold]
        if act and dor:
            n += 1
            k += int(np.mean(act) > np.mean(dor))
    return f"{k} of {n}" if n else None
