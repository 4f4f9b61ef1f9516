"""Two head interventions, both hooks on the model's own modules, and their loss changes.

* **Zero a head's output**: a forward pre-hook on the layer's output projection zeroes the
  head's segment of its input (``adapter.head_output_range``) — identical to zeroing the head's
  output-projection columns, without touching a weight.
* **Remove a head's attention to the sink and renormalise the rest**: softmax over the keys
  with the sink keys' logits set to -inf is exactly ``p_j / (1 - sum_{s in S} p_s)`` for every
  other key j, i.e. the sink probabilities removed and the rest renormalised. So instead of
  editing probabilities inside a family's attention code we edit the additive attention mask
  the layer receives: a forward pre-hook on the attention module replaces its
  ``attention_mask`` argument by a per-head copy in which the sink columns are masked for the
  chosen heads. Every supported family (BLOOM included, which does not use transformers'
  attention-function registry) applies that mask to its logits before the softmax, so one hook
  serves all: BLOOM's additive float mask, and the boolean keep-mask (or ``None`` for plain
  causal attention) that the measurement engine's SDPA path receives; MPT's attention
  receives a boolean mask with ``True`` marking *masked* keys (declared by its adapter's
  ``boolean_mask_marks_masked``), edited the same way after flipping it.
  Query rows that can see nothing but sink keys (query 0 when position 0 is a sink) are left
  unchanged — there is nothing to renormalise onto.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.measurements.ablation import ablated_heads
from headsurgeon.models.adapters import FamilyAdapter, HeadRef


def _by_layer(heads: Sequence[HeadRef]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for ref in heads:
        out.setdefault(ref.layer, []).append(ref.head)
    return out


#: Zeroing a head's output is the same operation as head ablation in the evaluation package.
zero_heads = ablated_heads


def mask_out_keys(mask: torch.Tensor, heads: Sequence[int], positions: Sequence[Sequence[int]], num_heads: int,
                  *, boolean_marks_masked: bool = False) -> torch.Tensor:
    """A ``[B, num_heads, Tq, Tk]`` copy of ``mask`` (additive float, or boolean keep-mask) with
    key columns ``positions[b]`` masked for ``heads``, except in query rows that would see nothing else.
    ``boolean_marks_masked``: ``mask`` is boolean with ``True`` marking masked keys (MPT)."""
    if boolean_marks_masked and mask.dtype == torch.bool:
        return ~mask_out_keys(~mask, heads, positions, num_heads)
    if mask.ndim != 4 or not (torch.is_floating_point(mask) or mask.dtype == torch.bool):
        raise HeadsurgeonError(
            f"the attention layer received a {mask.dtype} mask of shape {tuple(mask.shape)}, not an additive float or boolean mask; "
            "sink removal needs a model loaded with headsurgeon.load_model"
        )
    B, _, Tq, Tk = mask.shape
    keep_mask = mask.dtype == torch.bool
    lowest = False if keep_mask else torch.finfo(mask.dtype).min
    out = mask.expand(B, num_heads, Tq, Tk).clone()
    for b, pos in enumerate(positions):
        pos = [p for p in pos if 0 <= p < Tk]
        if not pos:
            continue
        base = mask[b, 0]  # [Tq, Tk]
        visible = base if keep_mask else base > lowest / 2
        is_sink = torch.zeros(Tk, dtype=torch.bool, device=mask.device)
        is_sink[pos] = True
        rows = (visible & ~is_sink).any(-1)  # queries left with something to attend to
        block = out[b, list(heads)]  # [h, Tq, Tk] (a copy)
        block[:, rows[:, None] & is_sink[None, :]] = lowest
        out[b, list(heads)] = block
    return out


@contextmanager
def remove_sink_attention(adapter: FamilyAdapter, heads: Sequence[HeadRef], positions: Sequence[Sequence[int]]) -> Iterator[None]:
    """Within this context, ``heads`` give no attention to key ``positions[b]`` of batch row b
    (the rest of each row renormalised). ``positions`` must match the batch about to run."""
    for ref in heads:
        adapter.check_head(ref.layer, ref.head)
    handles = []

    def make_hook(hs: list[int]):
        def hook(module, args, kwargs):
            if "attention_mask" in kwargs:
                where, mask = None, kwargs["attention_mask"]
            else:  # passed positionally: find its slot in the module's own signature
                names = [p for p in inspect.signature(module.forward).parameters]
                where = names.index("attention_mask") if "attention_mask" in names else None
                mask = args[where] if where is not None and where < len(args) else None
            if mask is None:  # plain causal attention (no padding): spell the causal mask out
                hidden = kwargs.get("hidden_states", args[0] if args else None)
                B, T = hidden.shape[:2]
                mask = torch.ones(T, T, dtype=torch.bool, device=hidden.device).tril().expand(B, 1, T, T)
                if where is not None and where >= len(args):
                    where = None  # not passed at all: hand it over as a keyword
            if len(positions) != mask.shape[0]:
                raise HeadsurgeonError(f"sink positions were given for {len(positions)} sequences but the batch has {mask.shape[0]}")
            new = mask_out_keys(mask, hs, positions, adapter.num_heads,
                                boolean_marks_masked=adapter.boolean_mask_marks_masked)
            if where is None:
                return args, {**kwargs, "attention_mask": new}
            return (*args[:where], new, *args[where + 1 :]), kwargs

        return hook

    try:
        for layer, hs in _by_layer(heads).items():
            handles.append(adapter.attention_module(layer).register_forward_pre_hook(make_hook(hs), with_kwargs=True))
        yield
    finally:
        for h in handles:
            h.remove()
