"""Train only what changes: surgical slices as their own small parameters.

For every projection that contains a surgical region (a target's Q/K/V rows, its output
columns), the weight stays a frozen, unmodified tensor, and a :class:`SliceDelta` submodule
holds just the regions as trainable ``nn.Parameter`` pieces. While installed, the projection's
forward multiplies by the frozen weight with the pieces spliced in (one ordinary matmul, so the
output is exactly the merged model's), and its backward (:class:`_SplicedLinear`) forms the
input gradient plus each piece's own gradient. Consequences, by construction:

* gradients and optimizer state exist for the pieces only (memory scales with heads repaired);
* no whole-matrix weight gradient is ever formed, unlike masking whole matrices;
* every element outside the regions is never written, so it stays bit-identical whatever the
  optimizer does (weight decay included);
* AdamW on the pieces gives what AdamW on whole matrices with masked gradients gives (Adam is
  element-wise and a masked element's moments stay zero; equal up to float summation order in
  the piece gradients, tested).

:func:`SurgicalSlices.merge` writes the pieces into the regions and restores the plain forward,
so ``save_pretrained`` produces a plain model that ``transformers`` loads without headsurgeon;
:func:`SurgicalSlices.remove` just drops the pieces.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from headsurgeon.models.adapters import FamilyAdapter, HeadRef, TensorSlice

from .plan import SurgeryPlan

#: Name of the submodule that carries the pieces inside each touched projection.
SLICES_ATTR = "headsurgeon_slices"


def _splice(weight: torch.Tensor, bias: torch.Tensor | None, entries, pieces) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Copies of ``weight`` (``nn.Linear`` form) and ``bias`` with the pieces written into their regions."""
    w = weight.clone()
    b = None if bias is None else bias.clone()
    for (kind, start, stop), piece in zip(entries, pieces):
        if kind == "out_w":
            w[start:stop] = piece
        elif kind == "in_w":
            w[:, start:stop] = piece
        else:
            b[start:stop] = piece
    return w, b


class _SplicedLinear(torch.autograd.Function):
    """``y = x W'^T + b'`` where ``W'``/``b'`` are the frozen tensors with the pieces spliced in.

    The forward is one ordinary matmul with the spliced weight, so the output is exactly what
    the merged model computes. The backward forms the input gradient (one matmul, as any frozen
    layer needs) and, for each piece, only that piece's gradient: ``dY[:, rows]^T X`` for a block
    of output features, ``dY^T X[:, cols]`` for a block of input features. The whole-matrix
    weight gradient that masking would compute and then mostly zero is never formed.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, entries, *pieces):
        w, b = _splice(weight, bias, entries, pieces)
        ctx.entries = entries
        ctx.save_for_backward(x, weight, *pieces)  # the frozen weight itself, no copy kept alive
        return F.linear(x, w, b)

    @staticmethod
    def backward(ctx, dy):
        x, weight, *pieces = ctx.saved_tensors
        dx = None
        if ctx.needs_input_grad[0]:
            w, _ = _splice(weight, None, [e for e in ctx.entries if e[0] != "bias"],
                           [p for e, p in zip(ctx.entries, pieces) if e[0] != "bias"])
            dx = dy @ w
        x2 = x.reshape(-1, x.shape[-1])
        dy2 = dy.reshape(-1, dy.shape[-1])
        grads = []
        for kind, start, stop in ctx.entries:
            if kind == "out_w":
                grads.append(dy2[:, start:stop].t() @ x2)
            elif kind == "in_w":
                grads.append(dy2.t() @ x2[:, start:stop])
            else:
                grads.append(dy2[:, start:stop].sum(0))
        return (dx, None, None, None, *grads)


class SliceDelta(nn.Module):
    """The trainable pieces of one projection, and the forward that uses them.

    Each entry is ``(kind, start, stop)``: ``out_w`` a block of output features of the weight,
    ``in_w`` a block of input features, ``bias`` a block of the bias. Pieces are stored in the
    weight's own layout (``[in, out]`` for GPT-2's ``Conv1D``) so checkpoints hold plain
    regions; ``transposed`` says to view them (and the weight) in ``nn.Linear`` form.
    """

    def __init__(self, entries: list[tuple[str, int, int]], values: list[torch.Tensor], transposed: bool,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        self.entries = entries
        self.transposed = transposed
        self.pieces = nn.ParameterList([nn.Parameter(v.detach().clone().to(dtype)) for v in values])

    def projection_forward(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Replacement for ``module.forward`` (an ``nn.Linear`` or a ``Conv1D``) while installed."""
        device = x.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
        weight = module.weight.t() if self.transposed else module.weight
        bias = module.bias
        # Casting the fp32 master pieces here keeps their gradients fp32 (autograd casts them back).
        pieces = [(p.t() if self.transposed and kind != "bias" else p).to(dtype) for (kind, _, _), p in zip(self.entries, self.pieces)]
        with torch.autocast(device, enabled=False):
            return _SplicedLinear.apply(x.to(dtype), weight.to(dtype), None if bias is None else bias.to(dtype), self.entries, *pieces)


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
        self._modules: list[nn.Module] = []

    def _kind(self, region: TensorSlice, param: torch.Tensor) -> str:
        if param.ndim == 1:
            return "bias"
        return "out_w" if region.dim == self.adapter.weight_output_dim else "in_w"

    def install(self) -> SurgicalSlices:
        """Freeze the whole model and give each touched projection its pieces and spliced forward.

        The model's own tensors are not modified; until :meth:`merge` they hold the input values.
        """
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
                    entries.append((self._kind(sl, param), sl.start, sl.stop))
                    values.append(self._values[i])
                    owners.append((name, i))
            # fp32 master copies for half-precision weights; float64 models keep float64
            dtype = torch.promote_types(self.adapter.parameter(names[0]).dtype, torch.float32)
            delta = SliceDelta(entries, values, transposed, dtype)
            module.add_module(SLICES_ATTR, delta)
            module.forward = partial(delta.projection_forward, module)
            self._modules.append(module)
            for (name, i), piece in zip(owners, delta.pieces):
                self.installed.setdefault(name, []).append((i, piece))
        return self

    def parameters(self) -> list[nn.Parameter]:
        return [p for name in self.installed for _, p in self.installed[name]]

    def named_pieces(self) -> dict[str, nn.Parameter]:
        """Pieces under stable names ``<parameter>#<k>`` (k-th region of that parameter)."""
        return {f"{name}#{k}": p for name in self.installed for k, (_, p) in enumerate(self.installed[name])}

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def load_pieces(self, tensors: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for key, p in self.named_pieces().items():
                p.copy_(tensors[key])

    def _spliced(self, name: str, base: torch.Tensor) -> torch.Tensor:
        out = base.detach().clone()
        for i, piece in self.installed[name]:
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
        for module in self._modules:
            del module.forward  # the class's own forward again
            delattr(module, SLICES_ATTR)
        self._modules.clear()
        self.installed.clear()

    @torch.no_grad()
    def merge(self) -> None:
        """Write the pieces into the frozen parameters and restore the plain forward."""
        for name in self.installed:
            param = self.adapter.parameter(name)
            for i, piece in self.installed[name]:
                self.regions[i].slice.view(param.data).copy_(piece.detach().to(param.dtype))
        self._detach_modules()

    def remove(self) -> None:
        """Undo :meth:`install`: drop the pieces; the parameters were never modified."""
        self._detach_modules()
