"""Head ablation: zero heads' outputs and measure how much the loss rises.

transformers 5 has no head masks, so a head is ablated where its output enters the model:
the input of the output projection (``o_proj`` / ``dense`` / ``c_proj``), whose last dimension
is ``[head0 | head1 | ...]``. One forward pre-hook per touched layer zeroes the heads'
segments, through the family adapter, so it works the same for every family. Comparing the
loss increase of collapsed and healthy heads (before and after repair) is the pruning view of
"does this head matter".
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from headsurgeon.models import LoadedModel
from headsurgeon.models.adapters import FamilyAdapter, HeadRef

from .perplexity import perplexity


@contextmanager
def ablated_heads(adapter: FamilyAdapter, heads: list[HeadRef]) -> Iterator[None]:
    """Within this context the given heads contribute nothing to the residual stream."""
    by_layer: dict[int, list[int]] = defaultdict(list)
    for h in heads:
        adapter.check_head(h.layer, h.head)
        by_layer[h.layer].append(h.head)
    handles = []

    def make_hook(indices: list[int]):
        ranges = [adapter.head_output_range(i) for i in indices]

        def hook(module, args):
            x = args[0].clone()
            for start, stop in ranges:
                x[..., start:stop] = 0
            return (x, *args[1:])

        return hook

    try:
        for layer, indices in by_layer.items():
            handles.append(adapter.output_projection(layer).register_forward_pre_hook(make_hook(indices)))
        yield
    finally:
        for h in handles:
            h.remove()


@dataclass
class AblationResult:
    """Mean next-token loss with nothing ablated and the increase for each ablated set."""

    base_loss: float
    delta: dict[str, float]  # set name -> loss increase (nats per token)
    tokens: int

    def to_dict(self) -> dict:
        return {"base_loss": self.base_loss, "delta": self.delta, "tokens": self.tokens}


@torch.no_grad()
def ablation_effects(
    loaded: LoadedModel,
    sequences: torch.Tensor,
    head_sets: dict[str, list[HeadRef]],
    *,
    batch_size: int = 4,
    progress: bool = False,
) -> AblationResult:
    """Loss increase when each named set of heads is zeroed together (one pass per set)."""
    base = perplexity(loaded.model, sequences, batch_size=batch_size)
    delta = {}
    for name, heads in head_sets.items():
        with ablated_heads(loaded.adapter, heads):
            delta[name] = perplexity(loaded.model, sequences, batch_size=batch_size).mean_nll - base.mean_nll
    return AblationResult(base_loss=base.mean_nll, delta=delta, tokens=base.tokens)


def per_head_effects(loaded: LoadedModel, sequences: torch.Tensor, heads: list[HeadRef], *, batch_size: int = 4) -> AblationResult:
    """Loss increase for each head ablated alone (keys are ``"L{layer}H{head}"``)."""
    return ablation_effects(loaded, sequences, {str(h): [h] for h in heads}, batch_size=batch_size)
