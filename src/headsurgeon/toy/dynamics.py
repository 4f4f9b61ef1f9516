"""The quantities whose joint evolution is the extreme-token story, measured on one batch.

Definitions (query positions exclude t = 0, where BOS can only see itself; "trigger
positions" are queries whose token is a trigger, i.e. where the model must copy the token at
t - 1; "non-trigger positions" are all other queries t >= 1):

- ``loss_trigger`` / ``loss_nontrigger``: next-token cross-entropy (nats) at those positions.
- ``L{l}H{h}.bos_attn_nontrigger`` / ``.bos_attn_trigger``: mean attention weight on key 0.
- ``.bos_share_nontrigger``: weight on key 0 divided by the row's total weight. Equal to the
  weight under softmax; under ReLU attention rows need not sum to one, so both are kept.
- ``.copy_attn_trigger``: mean attention from a trigger position t to key t - 1 (the copy
  source); ``.copy_share_trigger`` divides by the row's total weight, like ``bos_share``.
- ``.bos_self_weight``: weight of query 0 on itself: 1 under softmax, relu(s_00) under ReLU
  attention, where nothing bounds it (the "position-0 blow-up" of pre-LN + ReLU models).
- ``.bos_logit``: mean raw score q_t.k_0 / sqrt(D) at non-trigger positions; ``.bos_logit_gap``
  subtracts the mean score of the other visible keys (what the softmax actually feels).
- ``.value_norm_bos`` / ``.value_norm_other``: mean L2 norm of the head's value vector at
  position 0 / at positions >= 1.
- ``res{l}.norm_bos`` / ``res{l}.norm_other``: mean L2 norm of the residual stream at position
  0 / positions >= 1; ``res0`` is the embedding, ``res{l}`` the output of block l.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from headsurgeon.toy.model import ToyTransformer
from headsurgeon.toy.task import BigramBackcopy


def _mean(values: torch.Tensor, mask: torch.Tensor) -> float:
    n = int(mask.sum())
    return float(values[mask].double().mean()) if n else float("nan")


@torch.no_grad()
def measure(model: ToyTransformer, x: torch.Tensor, task: BigramBackcopy) -> dict[str, float]:
    """All dynamics quantities for ``model`` on the batch ``x`` (B, T + 1): the model reads
    ``x[:, :-1]`` and every read position has its target in ``x[:, 1:]``."""
    was_training = model.training
    model.eval()
    inputs, targets = x[:, :-1], x[:, 1:]
    logits, trace = model.run_with_trace(inputs)
    model.train(was_training)
    b, t = inputs.shape
    trig = task.trigger_mask(inputs)
    query = torch.ones(b, t, dtype=torch.bool)
    query[:, 0] = False
    q_trig, q_non = trig & query, ~trig & query

    out: dict[str, float] = {}
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                         reduction="none").view(b, t)
    out["loss"] = float(ce[:, 1:].mean())
    out["loss_trigger"] = _mean(ce, q_trig)
    out["loss_nontrigger"] = _mean(ce, q_non)

    prev_idx = (torch.arange(t) - 1).clamp(min=0)
    visible = torch.ones(t, t, dtype=torch.bool).tril()
    visible[:, 0] = False  # "other" keys: 1..t
    n_other = visible.sum(-1).clamp(min=1)
    for layer, scores, probs, values in zip(trace.attn_layers, trace.scores, trace.probs,
                                            trace.values):
        for head in range(probs.shape[1]):
            p, s, v = probs[:, head], scores[:, head], values[:, head]  # (B,T,T) (B,T,T) (B,T,D)
            key = f"L{layer}H{head}."
            bos = p[:, :, 0]
            share = bos / p.sum(-1).clamp(min=1e-30)
            copy = p.gather(2, prev_idx.view(1, t, 1).expand(b, t, 1)).squeeze(2)
            gap = s[:, :, 0] - s.masked_fill(~visible, 0.0).sum(-1) / n_other
            vnorm = v.norm(dim=-1)  # (B, T)
            out[key + "bos_attn_nontrigger"] = _mean(bos, q_non)
            out[key + "bos_attn_trigger"] = _mean(bos, q_trig)
            out[key + "bos_share_nontrigger"] = _mean(share, q_non)
            out[key + "copy_attn_trigger"] = _mean(copy, q_trig)
            out[key + "copy_share_trigger"] = _mean(copy / p.sum(-1).clamp(min=1e-30), q_trig)
            out[key + "bos_self_weight"] = float(p[:, 0, 0].mean())
            out[key + "bos_logit"] = _mean(s[:, :, 0], q_non)
            out[key + "bos_logit_gap"] = _mean(gap, q_non)
            out[key + "value_norm_bos"] = float(vnorm[:, 0].mean())
            out[key + "value_norm_other"] = float(vnorm[:, 1:].mean())
    for layer, h in enumerate(trace.residuals):
        norms = h.norm(dim=-1)
        out[f"res{layer}.norm_bos"] = float(norms[:, 0].mean())
        out[f"res{layer}.norm_other"] = float(norms[:, 1:].mean())
    return out


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


@dataclass(frozen=True)
class DynamicsThresholds:
    """When a number counts as the phenomenon. Deliberately plain, stated in every summary."""

    sink: float = 0.5  # mean BOS weight at non-trigger positions above this = sink
    copy: float = 0.5  # mean weight on the copy source at trigger positions above this
    drain: float = 0.25  # BOS value norm below this fraction of the others' = drain
    peak: float = 2.0  # BOS residual norm above this multiple of the others' = peak


def summarize(row: dict[str, float], n_layers: int, thresholds: DynamicsThresholds = DynamicsThresholds()) -> dict:
    """Headline numbers of one measurement row (``train`` passes the mean of the rows logged
    in the last 10% of steps), with yes/no verdicts at ``thresholds``.

    Verdicts on attention use *shares* of the row's total weight (identical to the weights
    under softmax; under ReLU attention rows are not normalised, so a weight of 0.3 can be
    the whole of what the head attends to). The "copy head" is the head with the largest copy
    attention at trigger positions: the one
    that does the task, so the one whose sink and drain matter. The peak is the largest
    BOS/other residual-norm ratio over block outputs (layers 1..L, not the embedding).
    """
    heads = [key.split(".")[0] for key in row if key.endswith(".copy_attn_trigger")]
    copy_head = max(heads, key=lambda h: row[f"{h}.copy_attn_trigger"])
    k = copy_head + "."
    ratios = {l: _ratio(row[f"res{l}.norm_bos"], row[f"res{l}.norm_other"])
              for l in range(1, n_layers + 1)}
    peak_layer = max(ratios, key=lambda l: -1.0 if ratios[l] != ratios[l] else ratios[l])
    drain_ratio = _ratio(row[k + "value_norm_bos"], row[k + "value_norm_other"])
    s = {
        "copy_head": copy_head,
        "loss_trigger": row["loss_trigger"],
        "loss_nontrigger": row["loss_nontrigger"],
        "bos_attn_nontrigger": row[k + "bos_attn_nontrigger"],
        "bos_share_nontrigger": row[k + "bos_share_nontrigger"],
        "bos_attn_trigger": row[k + "bos_attn_trigger"],
        "copy_attn_trigger": row[k + "copy_attn_trigger"],
        "copy_share_trigger": row[k + "copy_share_trigger"],
        "bos_logit_gap": row[k + "bos_logit_gap"],
        "value_norm_ratio": drain_ratio,
        "residual_ratio_by_layer": {str(l): r for l, r in ratios.items()},
        "residual_peak_layer": peak_layer,
        "residual_peak_ratio": ratios[peak_layer],
    }
    s["verdicts"] = {
        "sink": s["bos_share_nontrigger"] > thresholds.sink,
        "copy_at_triggers": s["copy_share_trigger"] > thresholds.copy,
        "drain": drain_ratio < thresholds.drain,
        "peak": ratios[peak_layer] > thresholds.peak,
    }
    s["thresholds"] = asdict(thresholds)
    return s
