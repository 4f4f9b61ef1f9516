"""Skip the frozen layers below the lowest target after the first epoch.

Every layer below the lowest target layer is frozen and sees only frozen inputs, so the
residual stream entering that layer is a fixed function of the training sequence. The first
time a sequence is trained on, :class:`FrozenPrefixCache` keeps that stream; when the sequence
comes again (the next epoch), the layers below are not run at all: they pass their input through
untouched and the lowest target layer receives the kept stream instead. For targets in the
upper half of a model (SmolLM2's 20 most collapsed heads start at layer 15 of 30) that removes
half of the forward pass from every step after the first epoch.

The result equals training without the cache up to the floating-point effect of computing a
sequence's prefix in another batch (on CPU the kept and recomputed streams were bit-identical
in our tests; tested to 1e-6). It is opt-in (``SurgeryConfig.cache_frozen_prefix``) because it
holds ``sequences x seq_len x hidden`` values in host memory (pinned when training on a GPU),
capped by ``prefix_cache_gb``: sequences beyond the cap are simply recomputed.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.models.adapters import FamilyAdapter


def active_dropout(model: torch.nn.Module) -> list[str]:
    """Dropout the model applies in training mode: ``nn.Dropout`` modules and config rates above 0."""
    found = sorted({f"{name} (p={m.p})" for name, m in model.named_modules() if isinstance(m, torch.nn.Dropout) and m.p > 0})
    for key, value in model.config.to_dict().items():
        if ("drop" in key) and isinstance(value, float) and value > 0:
            found.append(f"config.{key}={value}")
    return found


class FrozenPrefixCache:
    """Residual streams entering layer ``first_layer``, one per training sequence (row)."""

    def __init__(self, adapter: FamilyAdapter, first_layer: int, n_rows: int, *, max_bytes: int):
        dropout = active_dropout(adapter.model)
        if first_layer > 0 and dropout:
            raise HeadsurgeonError(
                f"--cache-frozen-prefix needs layers that give the same output for the same text, but this model uses dropout "
                f"({', '.join(dropout[:3])}{', ...' if len(dropout) > 3 else ''}); set its dropout rates to 0 or train without the cache"
            )
        self.adapter = adapter
        self.first_layer = first_layer
        self.n_rows = n_rows
        self.max_bytes = max_bytes
        self.store: torch.Tensor | None = None  # [rows that fit, seq, hidden], allocated at the first fill
        self.filled = torch.zeros(n_rows, dtype=torch.bool)
        self.capacity = 0
        self.hits = 0  # micro-batches that skipped the prefix
        self.fills = 0  # micro-batches whose prefix was computed (and kept where it fits)
        self._extras: dict[int, int] = {}  # block index -> number of extra items its output tuple carries (-1: bare tensor)

    @property
    def active(self) -> bool:
        return self.first_layer > 0

    def _allocate(self, sample: torch.Tensor) -> None:
        per_row = sample[0].numel() * sample.element_size()
        self.capacity = min(self.n_rows, self.max_bytes // max(per_row, 1))
        # Host memory, whatever the training device: a GPU's memory is better spent on the model.
        self.store = torch.empty((self.capacity, *sample.shape[1:]), dtype=sample.dtype, device="cpu",
                                 pin_memory=sample.is_cuda)

    @contextmanager
    def batch(self, rows: torch.Tensor):
        """Run one micro-batch of training rows ``rows`` with the prefix skipped or kept."""
        if not self.active:
            yield
            return
        rows = rows.cpu()
        target = self.adapter.block(self.first_layer)
        if self.store is not None and bool(self.filled[rows].all()):
            handles, patched = self._skip(target, rows), self._pass_through()
            self.hits += 1
        else:
            handles, patched = self._keep(target, rows), []
            self.fills += 1
        try:
            yield
        finally:
            for h in handles:
                h.remove()
            for block in patched:
                del block.forward

    def _keep(self, target, rows: torch.Tensor) -> list:
        def keep(module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            if self.store is None:
                self._allocate(hidden)
            fits = rows < self.capacity
            if fits.any():
                self.store[rows[fits]] = hidden.detach()[fits.to(hidden.device)].cpu()
                self.filled[rows[fits]] = True

        def shape(layer):
            def record(module, args, output):
                self._extras[layer] = len(output) - 1 if isinstance(output, tuple) else -1
            return record

        handles = [target.register_forward_pre_hook(keep, with_kwargs=True)]
        handles += [self.adapter.block(l).register_forward_hook(shape(l)) for l in range(self.first_layer) if l not in self._extras]
        return handles

    def _skip(self, target, rows: torch.Tensor) -> list:
        device = next(target.parameters()).device

        def inject(module, args, kwargs):
            kept = self.store[rows].to(device, non_blocking=True)
            if args:
                return (kept, *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": kept}

        return [target.register_forward_pre_hook(inject, with_kwargs=True)]

    def _pass_through(self) -> list:
        blocks = []
        for layer in range(self.first_layer):
            block = self.adapter.block(layer)
            extras = self._extras.get(layer, -1)

            def through(hidden_states=None, *args, _extras=extras, **kwargs):
                return hidden_states if _extras < 0 else (hidden_states, *([None] * _extras))

            block.forward = through
            blocks.append(block)
        return blocks
