"""Head ablation before and after repair: how much do collapsed, healthy and target heads matter?

The pruning view of a collapsed head: if zeroing its output barely changes the loss, it does
nothing useful. After surgery a repaired target should matter about as much as a healthy head.
Groups are fixed from the *stock* diagnosis (so "before" and "after" ablate the same heads):

* ``targets``: the plan's targets;
* ``collapsed``: heads collapsed in the stock model that the plan leaves alone;
* ``healthy``: heads not collapsed in the stock model and not targeted.

To stay cheap on real models, at most ``per_group`` heads of each group (evenly spread over the
group's layer-ordered list) are ablated one at a time — one forward pass over a few held-out
sequences each — and ``mean_per_head`` is their mean loss increase; ``set_delta`` ablates the
whole group at once (one pass), the joint effect of pruning all of it.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from headsurgeon.diagnosis import COLLAPSED, Diagnosis
from headsurgeon.measurements.ablation import ablated_heads
from headsurgeon.measurements.perplexity import perplexity
from headsurgeon.models import LoadedModel
from headsurgeon.models.adapters import HeadRef

GROUPS = ("targets", "collapsed", "healthy")


def _spread(heads: list[HeadRef], n: int) -> list[HeadRef]:
    if len(heads) <= n:
        return list(heads)
    return [heads[i] for i in np.linspace(0, len(heads) - 1, n).round().astype(int)]


def ablation_groups(stock: Diagnosis, targets: list[HeadRef]) -> dict[str, list[HeadRef]]:
    """Heads of each group (layer order) from the stock diagnosis and the plan's targets."""
    t = set(targets)
    collapsed = set(stock.heads(*COLLAPSED))
    L, H = stock.shape
    every = [HeadRef(l, h) for l in range(L) for h in range(H)]
    return {
        "targets": sorted(t),
        "collapsed": [h for h in every if h in collapsed and h not in t],
        "healthy": [h for h in every if h not in collapsed and h not in t],
    }


@torch.no_grad()
def ablation_before_after(
    models: dict[str, LoadedModel],
    groups: dict[str, list[HeadRef]],
    sequences: torch.Tensor,
    *,
    per_group: int = 6,
    batch_size: int = 4,
    progress: bool = True,
) -> dict:
    """Loss increase (nats per token) when heads are zeroed, for each model and group.

    Returns ``{settings, groups: {group: {size, sampled}}, models: {label: {base_loss,
    groups: {group: {per_head, mean_per_head, set_delta}}}}}``.
    """
    sampled = {g: _spread(hs, per_group) for g, hs in groups.items()}
    passes = len(models) * (1 + sum(len(s) + (1 if groups[g] else 0) for g, s in sampled.items()))
    bar = tqdm(total=passes, desc="ablation", unit="pass", disable=not progress, leave=False)

    def loss(lm: LoadedModel, heads: list[HeadRef]) -> float:
        with ablated_heads(lm.adapter, heads):
            value = perplexity(lm.model, sequences, batch_size=batch_size).mean_nll
        bar.update(1)
        return value

    out: dict = {}
    for label, lm in models.items():
        base = loss(lm, [])
        res: dict = {}
        for g in groups:
            per_head = {str(h): round(loss(lm, [h]) - base, 6) for h in sampled[g]}
            res[g] = {
                "per_head": per_head,
                "mean_per_head": round(float(np.mean(list(per_head.values()))), 6) if per_head else None,
                "set_delta": round(loss(lm, groups[g]) - base, 6) if groups[g] else None,
            }
        out[label] = {"base_loss": round(base, 6), "groups": res}
    bar.close()
    return {
        "settings": {"per_group": per_group, "sequences": int(sequences.shape[0]), "seq_len": int(sequences.shape[1]),
                     "tokens": int(sequences.shape[0] * (sequences.shape[1] - 1))},
        "groups": {g: {"size": len(groups[g]), "sampled": [str(h) for h in sampled[g]]} for g in groups},
        "models": out,
    }
