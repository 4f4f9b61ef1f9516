"""Train only what changes: surgical slices as their own small parameters.

For every projection that contains a surgical region (a target's Q/K/V rows, its output
columns), the weight stays a frozen tensor with the regions set to zero, and a
:class:`SliceDelta` submodule holds just the regions as trainable ``nn.Parameter`` pieces. A
forward hook adds each piece's contribution to the projection's output with its own small
matmul (``x @ piece^T`` into the piece's output features, or ``x[..., cols] @ piece^T`` for an
output-projection column block). Consequences, by construction:

* gradients and optimizer state exist for the pieces only (memory scales with heads repaired);
* no weight gradient of a whole matrix is ever computed: the backward pass does the frozen
  matrix's input gradient (needed anyway to reach earlier targets) plus the pieces' small
  products, which is what makes a step cheaper than masking whole matrices;
* every element outside the regions is never written, so it stays bit-identical whatever the
  optimizer does (weight decay included);
* AdamW on the pieces gives what AdamW on whole matrices with masked gradients gives (Adam is
  element-wise and a masked element's moments stay zero; equal up to float summation order,
  tested).

:func:`SurgicalSlices.merge` writes the pieces into the regions and removes the hooks, so
``save_pretrained`` produces a plain model that ``transformers`` loads without headsurgeon;
:func:`SurgicalSlices.remove` puts the original region values back instead.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from headsurgeon.models.adapters import FamilyAdapter, HeadRef, TensorSlice

from .plan import SurgeryPlan

#: Name of the submodule that carries the pieces inside each touched projection.
SLICES_ATTR = "headsurgeon_slices"


class SliceDelta(nn.Module):
    """The trainable pieces of one projection and the hook that adds their contribution.

    Each entry is ``(kind, start, stop)``: ``out_w`` a block of output features of the weight
    (piece in ``nn.Linear`` form ``[stop-start, in]``), ``in_w`` a block of input features
    (piece ``[out, stop-start]``), ``bias`` a block of the bias. Pieces are stored in the
    weight's own layout (``[in, out]`` for GPT-2's ``Conv1D``) so checkpoints hold plain
    regions; ``transposed`` turns them into ``nn.Linear`` form on the fly.
    """

    def __init__(self, entries: list[tuple[str, int, int]], values: list[torch.Tensor], transposed: bool,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        self.entries = entries
        self.transposed = transposed
        self.pieces = nn.ParameterList([nn.Parameter(v.detach().clone().to(dtype)) for v in values])

    def _linear_form(self, kind: str, piece: torch.Tensor) -> torch.Tensor:
        return piece.t() if self.transposed and kind != "bias" else piece

    def hook(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        x = args[0]
        autocast = torch.is_autocast_enabled(x.device.type)
        for (kind, start, stop), piece in zip(self.entries, self.pieces):
            w = self._linear_form(kind, piece)
            if kind == "bias":
                output.narrow(-1, start, stop - start).add_(w.to(output.dtype))
                continue
            w = w if autocast else w.to(x.dtype)  # autocast casts itself; fp32 pieces stay the master copy
            if kind == "out_w":
                output.narrow(-1, start, stop - start).add_(F.linear(x, w))
            else:  # in_w: these input features reach every output feature
                output.add_(F.linear(x.narrow(-1, start, stop - start), w))
        return output


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
    """Installs, exposes and merges (or removes) the trainable pieces of one model."""

    def __init__(self, adapter: FamilyAdapter, plan: SurgeryPlan, *, seed: int = 0, reinitialise: bool = True):
        self.adapter = adapter
        self.model = adapter.model
        self.plan = plan
        self.regions = surgical_regions(adapter, plan)
        self._values = initial_values(adapter, self.regions, seed, reinitialise=reinitialise)
        #: parameter name -> [(index into ``regions``, its trainable piece), ...]
        self.installed: dict[str, list[tuple[int, nn.Parameter]]] = {}
        self._originals: dict[int, torch.Tensor] = {}
        self._handles: list = []
        self._modules: list[nn.Module] = []

    def _kind(self, region: TensorSlice, param: torch.Tensor) -> str:
        if param.ndim == 1:
            return "bias"
        return "out_w" if region.dim == self.adapter.weight_output_dim else "in_w"

    def install(self) -> "SurgicalSlices":
        """Freeze the whole model, zero the regions and attach the pieces to their projections."""
        for p in self.model.parameters():
            p.requires_grad_(False)
        by_param: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(self.regions):
            by_param[r.slice.param].append(i)
        by_module: dict[str, list[str]] = defaultdict(list)
        for name in by_param:
            by_module[name.rsplit(".", 1)[0]].append(name)
        transposed = self.adapter.weight_output_dim == 1
        for module_name, names in by_module.items():
            module = self.model.get_submodule(module_name)
            entries, values, owners = [], [], []
            for name in names:
                param = self.adapter.parameter(name)
                for i in by_param[name]:
                    sl = self.regions[i].slice
                    view = sl.view(param.data)
                    self._originals[i] = view.detach().clone()
                    with torch.no_grad():
                        view.zero_()
                    entries.append((self._kind(sl, param), sl.start, sl.stop))
                    values.append(self._values[i])
                    owners.append((name, i))
            # fp32 master copies for half-precision weights; float64 models keep float64
            dtype = torch.promote_types(self.adapter.parameter(names[0]).dtype, torch.float32)
            delta = SliceDelta(entries, values, transposed, dtype)
            module.add_module(SLICES_ATTR, delta)
            self._handles.append(module.register_forward_hook(delta.hook))
            self._modules.append(module)
            for (name, i), piece in zip(owners, delta.pieces):
                self.installed.setdefault(name, []).append((i, piece))
        return self

    def _pieces_of(self, name: str) -> list[tuple[int, nn.Parameter]]:
        return self.installed[name]

    def parameters(self) -> list[nn.Parameter]:
        return [p for name in self.installed for _, p in self._pieces_of(name)]

    def named_pieces(self) -> dict[str, nn.Parameter]:
        """Pieces under stable names ``<parameter>#<k>`` (k-th region of that parameter)."""
        return {f"{name}#{k}": p for name in self.installed for k, (_, p) in enumerate(self._pieces_of(name))}

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def load_pieces(self, tensors: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for key, p in self.named_pieces().items():
                p.copy_(tensors[key])

    def _spliced(self, name: str, base: torch.Tensor) -> torch.Tensor:
        out = base.detach().clone()
        for i, piece in self._pieces_of(name):
            self.regions[i].slice.view(out).copy_(piece.detach().to(out.dtype))
        return out

    @torch.no_grad()
    def merged_state_dict(self) -> dict[str, torch.Tensor]:
        """The model's state dict under its original names, pieces written in (training goes on)."""
        sd = {k: v for k, v in self.model.state_dict().items() if f".{SLICES_ATTR}." not in k}
        for name in self.installed:
            if name in sd:
                sd[name] = self._spliced(name, sd[name])
        return sd

    def _detach_modules(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        for module in self._modules:
            delattr(module, SLICES_ATTR)
        self._modules.clear()
        self.installed.clear()

    @torch.no_grad()
    def merge(self) -> None:
        """Write the pieces into the frozen parameters and remove the hooks: a plain model again."""
        for name in self.installed:
            param = self.adapter.parameter(name)
            for i, piece in self._pieces_of(name):
                self.regions[i].slice.view(param.data).copy_(piece.detach().to(param.dtype))
        self._detach_modules()

    @torch.no_grad()
    def remove(self) -> None:
        """Undo :meth:`install`: put the original region values back and remove the hooks."""
        for name in self.installed:
            param = self.adapter.parameter(name)
            for i, _ in self._pieces_of(name):
                self.regions[i].slice.view(param.data).copy_(self._originals[i])
        self._detach_modules()
