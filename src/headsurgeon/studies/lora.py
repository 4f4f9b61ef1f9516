"""The conventional baseline: LoRA (via ``peft``) on the attention projections of the targets'
layers, with a rank chosen so its trainable parameter count matches the surgery arm's.

Which modules: every projection that holds a head's Q, K, V or output slice in a layer that
contains a target, found through the family adapter (``head_slices(...).q_weight.param`` etc.),
so this file never names a family's modules. A LoRA of rank ``r`` on a weight of shape
``(a, b)`` adds ``r * (a + b)`` parameters whichever way the weight is stored (``nn.Linear`` or
GPT-2's transposed ``Conv1D``), so the rank is ``round(surgery count / sum(a + b))`` and the two
counts differ by at most half of one rank step; both are recorded.

:class:`LoraPieces` gives the LoRA matrices the small interface the surgery training loop
expects (``parameters()``, ``named_pieces()``, ``load_pieces()``), so the baseline is trained by
the very same :func:`~headsurgeon.surgery.train.train_loop`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from headsurgeon.models.adapters import FamilyAdapter
from headsurgeon.surgery import SurgeryPlan, surgical_regions


def surgical_parameter_count(adapter: FamilyAdapter, plan: SurgeryPlan) -> int:
    """Trainable parameters surgery on ``plan`` would have (without allocating anything)."""
    total = 0
    for r in surgical_regions(adapter, plan):
        shape = adapter.parameter(r.slice.param).shape
        total += math.prod(shape) // shape[r.slice.dim] * r.slice.size
    return total


def lora_modules(adapter: FamilyAdapter, layers: list[int]) -> list[str]:
    """Names of the modules holding Q, K, V and output weights in ``layers`` (deduplicated:
    a fused QKV projection appears once)."""
    names: list[str] = []
    for layer in sorted(set(layers)):
        s = adapter.head_slices(layer, 0)
        for sl in (s.q_weight, s.k_weight, s.v_weight, s.o_weight):
            module = sl.param.rsplit(".", 1)[0]
            if module not in names:
                names.append(module)
    return names


@dataclass
class LoraSizing:
    """The matched rank and both parameter counts (recorded in the run manifest and the study)."""

    modules: list[str]
    rank: int
    alpha: float
    per_rank: int  # trainable parameters added by one unit of rank
    surgery_parameters: int
    lora_parameters: int

    @property
    def ratio(self) -> float:
        return self.lora_parameters / self.surgery_parameters

    def to_dict(self) -> dict:
        return {"modules": self.modules, "rank": self.rank, "alpha": self.alpha, "per_rank": self.per_rank,
                "surgery_parameters": self.surgery_parameters, "lora_parameters": self.lora_parameters,
                "ratio": round(self.ratio, 4)}


def matched_sizing(adapter: FamilyAdapter, plan: SurgeryPlan, *, scale: float = 2.0) -> LoraSizing:
    """Rank (alpha = ``scale`` x rank) whose LoRA count is nearest the surgery count."""
    modules = lora_modules(adapter, [t.layer for t in plan.targets])
    per_rank = 0
    for name in modules:
        w = adapter.parameter(f"{name}.weight")
        per_rank += int(w.shape[0] + w.shape[1])
    target = surgical_parameter_count(adapter, plan)
    rank = max(1, round(target / per_rank))
    return LoraSizing(modules=modules, rank=rank, alpha=scale * rank, per_rank=per_rank,
                      surgery_parameters=target, lora_parameters=rank * per_rank)


class LoraPieces:
    """LoRA adapters injected into a model in place; only their matrices are trainable."""

    def __init__(self, adapter: FamilyAdapter, sizing: LoraSizing, *, seed: int):
        from peft import LoraConfig, inject_adapter_in_model

        model = adapter.model
        self.model = model
        self.adapter = adapter  # also lets the training loop use the same attention path as surgery (SDPA)
        self.sizing = sizing
        # Weights stored [in, out] (GPT-2's Conv1D): peft needs to be told, or it warns and guesses.
        config = LoraConfig(r=sizing.rank, lora_alpha=sizing.alpha, lora_dropout=0.0, bias="none",
                            target_modules=list(sizing.modules), fan_in_fan_out=adapter.weight_output_dim == 1)
        # peft draws the A matrices from the global RNG: draw them from the seed without disturbing it.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            inject_adapter_in_model(config, model)
        self._named = {n: p for n, p in model.named_parameters() if "lora_" in n}
        for p in model.parameters():
            p.requires_grad_(False)
        for p in self._named.values():
            p.requires_grad_(True)
        counted = self.num_parameters()
        if counted != sizing.lora_parameters:
            raise RuntimeError(f"LoRA injected {counted} parameters, the sizing expected {sizing.lora_parameters}")

    def parameters(self) -> list[nn.Parameter]:
        return list(self._named.values())

    def named_pieces(self) -> dict[str, nn.Parameter]:
        return dict(self._named)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self._named.values())

    def load_pieces(self, tensors: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for key, p in self._named.items():
                p.copy_(tensors[key])
