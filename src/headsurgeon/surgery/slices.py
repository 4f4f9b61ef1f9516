"""Train only what changes: surgical slices as their own small parameters.

For every parameter that contains a surgical region (a target's Q/K/V rows, its output
columns), the full tensor is frozen and a :class:`SplicedWeight` parametrization holds just
the regions as trainable ``nn.Parameter`` pieces; on every forward it returns the frozen tensor
with the pieces written in. Consequences, by construction:

* gradients and optimizer state exist for the pieces only (memory scales with heads repaired);
* every element outside the regions is read from the untouched original, so it stays
  bit-identical whatever the optimizer does (weight decay included);
* AdamW on the pieces gives exactly what AdamW on whole matrices with masked gradients gives
  (Adam is element-wise and a masked element's moments stay zero; tested).

:func:`merge` writes the pieces back and removes the parametrizations, so ``save_pretrained``
produces a plain model that ``transformers`` loads without headsurgeon.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from headsurgeon.models.adapters import FamilyAdapter, HeadRef, TensorSlice

from .plan import SurgeryPlan


class SplicedWeight(nn.Module):
    """Parametrization: ``original`` with ``regions`` replaced by trainable ``pieces``."""

    def __init__(self, regions: list[TensorSlice], values: list[torch.Tensor]):
        super().__init__()
        self.regions = [(r.dim, r.start, r.stop) for r in regions]
        self.pieces = nn.ParameterList([nn.Parameter(v.detach().clone().float()) for v in values])

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        out = original.clone()
        for (dim, start, stop), piece in zip(self.regions, self.pieces):
            idx = [slice(None)] * out.ndim
            idx[dim] = slice(start, stop)
            out[tuple(idx)] = piece.to(out.dtype)
        return out


@dataclass
class Region:
    """One surgical region and how it starts: ``xavier`` (Q/K/V weights), ``zero`` (biases, output)."""

    head: HeadRef
    role: str  # q_weight, k_weight, v_weight, q_bias, ..., o_weight
    slice: TensorSlice
    init: str


def surgical_regions(adapter: FamilyAdapter, plan: SurgeryPlan) -> list[Region]:
    """The regions each target owns under the plan's GQA mode (shared K/V listed once)."""
    regions: list[Region] = []
    seen: set[tuple] = set()
    gqa = adapter.num_kv_heads < adapter.num_heads
    for head in plan.targets:
        s = adapter.head_slices(head.layer, head.head)
        roles = ["q_weight", "q_bias", "o_weight"]
        if not gqa or plan.gqa_mode == "group":
            roles += ["k_weight", "v_weight", "k_bias", "v_bias"]
        for role in roles:
            sl = getattr(s, role)
            key = (sl.param, sl.dim, sl.start, sl.stop) if sl is not None else None
            if sl is None or key in seen:
                continue
            seen.add(key)
            init = "xavier" if role in ("q_weight", "k_weight", "v_weight") else "zero"
            regions.append(Region(head, role, sl, init))
    return regions


def initial_values(adapter: FamilyAdapter, regions: list[Region], seed: int, *, reinitialise: bool = True) -> list[torch.Tensor]:
    """Seeded Xavier-uniform for Q/K/V weight regions, zeros for biases and output columns.

    ``reinitialise=False`` keeps the current values instead: the paper's negative control
    ("train the same slices without re-initialisation")."""
    gen = torch.Generator().manual_seed(seed)
    values = []
    for r in regions:
        current = r.slice.view(adapter.parameter(r.slice.param).data)
        if not reinitialise:
            values.append(current.detach().clone().float())
            continue
        v = torch.zeros(current.shape, dtype=torch.float32)
        if r.init == "xavier":
            nn.init.xavier_uniform_(v, generator=gen)
        values.append(v)
    return values


class SurgicalSlices:
    """Installs, exposes and merges the trainable pieces of one model."""

    def __init__(self, adapter: FamilyAdapter, plan: SurgeryPlan, *, seed: int = 0, reinitialise: bool = True):
        self.adapter = adapter
        self.model = adapter.model
        self.plan = plan
        self.regions = surgical_regions(adapter, plan)
        self._values = initial_values(adapter, self.regions, seed, reinitialise=reinitialise)
        self.installed: dict[str, SplicedWeight] = {}

    def install(self) -> "SurgicalSlices":
        """Freeze the whole model and splice trainable pieces into the touched parameters."""
        for p in self.model.parameters():
            p.requires_grad_(False)
        by_param: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(self.regions):
            by_param[r.slice.param].append(i)
        for name, idx in by_param.items():
            module_name, attr = name.rsplit(".", 1)
            module = self.model.get_submodule(module_name)
            spliced = SplicedWeight([self.regions[i].slice for i in idx], [self._values[i] for i in idx])
            parametrize.register_parametrization(module, attr, spliced, unsafe=True)
            getattr(module.parametrizations, attr).original.requires_grad_(False)
            self.installed[name] = spliced
        return self

    def parameters(self) -> list[nn.Parameter]:
        return [p for s in self.installed.values() for p in s.pieces]

    def named_pieces(self) -> dict[str, nn.Parameter]:
        return {f"{name}#{i}": p for name, s in self.installed.items() for i, p in enumerate(s.pieces)}

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def load_pieces(self, tensors: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for key, p in self.named_pieces().items():
                p.copy_(tensors[key])

    @torch.no_grad()
    def merged_state_dict(self) -> dict[str, torch.Tensor]:
        """The model's state dict under its original names, pieces written in (training goes on)."""
        sd = {}
        for key, value in self.model.state_dict().items():
            if ".parametrizations." in key:
                continue
            sd[key] = value
        for name, spliced in self.installed.items():
            module_name, attr = name.rsplit(".", 1)
            module = self.model.get_submodule(module_name)
            sd[name] = spliced(getattr(module.parametrizations, attr).original).detach().clone()
        return sd

    @torch.no_grad()
    def merge(self) -> None:
        """Write the pieces back into plain parameters and remove the parametrizations."""
        for name in list(self.installed):
            module_name, attr = name.rsplit(".", 1)
            module = self.model.get_submodule(module_name)
            parametrize.remove_parametrizations(module, attr, leave_parametrized=True)
            getattr(module, attr).requires_grad_(False)
        self.installed.clear()
