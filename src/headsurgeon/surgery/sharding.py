"""Surgical slices under FSDP (PyTorch's ``fully_shard``): how they behave, and the two steps it needs.

Decisions, and why:

* **The slices stay parameters of their own.** :class:`~.slices.SurgicalSlices` holds each
  target's Q/K/V rows and output columns as small ``nn.Parameter`` pieces inside the projection
  that owns them, next to a frozen base weight. FSDP shards the pieces with the rest of their
  block (one communication group per block; FSDP2 keeps frozen and trainable parameters in the
  same group without gradients for the frozen ones), so gradients, their reduce-scatter and the
  optimizer state exist for the pieces only, and the frozen weights stay bit-identical.
* **Re-initialised before sharding.** The pieces get their Xavier/zero values from the run's seed
  on every rank *before* :func:`shard_for_training` (``SurgicalSlices(..., seed=...).install()``
  on each rank), so every rank starts from the same full tensors and each keeps its shard;
  nothing is re-initialised on a sharded tensor.
* **The optimizer is built after sharding**, over the sharded pieces (sharding replaces the
  parameter objects; :func:`trainable_pieces` finds the new ones by name).
* **The merged model is exported from rank 0.** :func:`merged_full_state_dict` gathers the full
  state dict (a collective: every rank calls it), and rank 0 writes each piece into its region
  of the frozen weight, exactly what :meth:`SurgicalSlices.merge` does on one device; the other
  ranks get ``None`` and write nothing.

Tested on two CPU processes with the gloo backend (``tests/surgery/test_fsdp.py``): two ranks
with half the batch each end with the same merged model as one process with the whole batch.
"""

from __future__ import annotations

import torch
from torch import nn

from .slices import SLICES_ATTR, SurgicalSlices


def piece_keys(model: nn.Module, slices: SurgicalSlices) -> dict[str, list[tuple[int, str]]]:
    """``{frozen parameter: [(region index, state-dict key of its piece), ...]}``, taken before sharding."""
    key_of = {id(p): n for n, p in model.named_parameters(remove_duplicate=False)}
    return {name: [(i, key_of[id(piece)]) for i, piece in entries] for name, entries in slices.installed.items()}


def shard_for_training(model: nn.Module, slices: SurgicalSlices, *, mesh=None) -> nn.Module:
    """``fully_shard`` every decoder block, then the root; the slices must already be installed."""
    from torch.distributed.fsdp import fully_shard

    if not slices.installed:
        raise ValueError("install the surgical slices (re-initialised from the seed) before sharding")
    adapter = slices.adapter
    for layer in range(adapter.num_layers):
        fully_shard(adapter.block(layer), mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def trainable_pieces(model: nn.Module) -> list[nn.Parameter]:
    """The (sharded) surgical pieces, the only parameters the optimizer may see."""
    return [p for n, p in model.named_parameters() if f".{SLICES_ATTR}." in n]


@torch.no_grad()
def merged_full_state_dict(model: nn.Module, slices: SurgicalSlices, keys: dict[str, list[tuple[int, str]]]) -> dict | None:
    """On rank 0: the plain model's full state dict with every piece written into its region.

    Every rank must call it (the full state dict is gathered collectively); ranks other than 0
    get ``None``. ``keys`` comes from :func:`piece_keys`, taken before sharding.
    """
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
    )

    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if dist.is_initialized() and dist.get_rank() != 0:
        return None
    out = {k: v.clone() for k, v in full.items() if f".{SLICES_ATTR}." not in k}
    for name, entries in keys.items():
        for i, key in entries:
            slices.regions[i].slice.view(out[name]).copy_(full[key].to(out[name].dtype))
    return out
