"""Hooks that reduce one forward pass to the few per-token numbers the study needs.

Three kinds of hook, all on the model's own modules and all reducing *inside* the hook, so no
layer's attention map or hidden state outlives its layer:

* attention (via the measurement engine, :func:`headsurgeon.capture.measure_attention`):
  attention received per key position, ``[heads, T]`` per layer (see :mod:`.sinks`), computed
  exactly in chunks of query rows inside each attention call, never as a T x T map;
* value states: head h's value state is output features ``start:stop`` of the module that owns
  the adapter's ``v_weight`` parameter (fused QKV, Conv1D or a separate value projection alike;
  with grouped-query attention the slice is the head's KV group). Its L2 norm per token is kept;
* residual stream: the input of block 0 (the embedding output) and the output of every block
  (its first element when a tuple). Per token: the L2 norm and the ``top_k`` dimensions of
  largest |value| (signed values kept); per prompt and layer: the median |activation| over all
  real tokens and dimensions, and the sum of |activation| per dimension.

Everything is kept per *batch* in small tensors and split per prompt afterwards
(:meth:`BatchProbe.prompt`).
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from headsurgeon.capture import LayerStats, measure_attention
from headsurgeon.errors import CaptureError
from headsurgeon.models.adapters import FamilyAdapter


def first_tensor(output) -> torch.Tensor:
    """A block's residual stream from its output (a tensor, or a tuple whose first item is it)."""
    return output[0] if isinstance(output, (tuple, list)) else output


def value_taps(adapter: FamilyAdapter, layer: int) -> dict[str, list[tuple[int, int, int]]]:
    """``{module name: [(head, start, stop), ...]}``: where each head's value state sits in the
    output features of the module owning its value weight."""
    taps: dict[str, list[tuple[int, int, int]]] = {}
    for h in range(adapter.num_heads):
        v = adapter.head_slices(layer, h).v_weight
        taps.setdefault(v.param.rsplit(".", 1)[0], []).append((h, v.start, v.stop))
    return taps


@dataclass
class PromptProbe:
    """One prompt's reductions (numpy, trimmed to its ``length`` real tokens).

    ``received [L, H, T]``; ``value_norm [L, H, T]``; ``resid_norm [L+1, T]`` (index 0 = block 0
    input); ``top_idx``/``top_val [L+1, T, k]``; ``median_abs [L+1]``; ``dim_abs_sum [L+1, D]``.
    Parts not measured are ``None``.
    """

    length: int
    received: np.ndarray
    value_norm: np.ndarray | None = None
    resid_norm: np.ndarray | None = None
    top_idx: np.ndarray | None = None
    top_val: np.ndarray | None = None
    median_abs: np.ndarray | None = None
    dim_abs_sum: np.ndarray | None = None


class BatchProbe:
    """Buffers for one right-padded batch; :meth:`attach` installs the hooks for one forward."""

    def __init__(self, adapter: FamilyAdapter, lengths: torch.Tensor, *, values: bool, residual: bool, top_k: int, chunk: int | None = None):
        self.adapter, self.lengths, self.chunk = adapter, lengths.cpu(), chunk
        B, T = len(lengths), int(lengths.max())
        L, H = adapter.num_layers, adapter.num_heads
        self.T, self.top_k = T, top_k
        self.received = torch.full((B, L, H, T), float("nan"))
        self.value_norm = torch.full((B, L, H, T), float("nan")) if values else None
        if residual:
            k = min(top_k, adapter.hidden_size)
            self.resid_norm = torch.full((B, L + 1, T), float("nan"))
            self.top_idx = torch.zeros((B, L + 1, T, k), dtype=torch.long)
            self.top_val = torch.zeros((B, L + 1, T, k))
            self.median_abs = torch.full((B, L + 1), float("nan"))
            self.dim_abs_sum = torch.zeros((B, L + 1, adapter.hidden_size))
        else:
            self.resid_norm = None
        self.seen: set[tuple[str, int]] = set()

    # ----- reductions (called from hooks) -------------------------------------------------
    def _on_attention(self, att: LayerStats) -> None:
        self.received[:, att.layer] = att.rows.received.cpu()[..., : self.T]
        self.seen.add(("attention", att.layer))

    def _on_values(self, layer: int, taps: list[tuple[int, int, int]], output: torch.Tensor) -> None:
        out = first_tensor(output).detach().float()
        for h, start, stop in taps:
            self.value_norm[:, layer, h] = out[..., start:stop].norm(dim=-1).cpu()[:, : self.T]
        self.seen.add(("values", layer))

    def _on_residual(self, index: int, hidden: torch.Tensor) -> None:
        x = hidden.detach().float()[:, : self.T]  # [B, T, D]
        self.resid_norm[:, index] = x.norm(dim=-1).cpu()
        vals, idx = x.abs().topk(self.top_idx.shape[-1], dim=-1)
        self.top_idx[:, index] = idx.cpu()
        self.top_val[:, index] = x.gather(-1, idx).cpu()
        for b, n in enumerate(self.lengths.tolist()):
            real = x[b, :n].abs()
            self.median_abs[b, index] = real.median().cpu()
            self.dim_abs_sum[b, index] = real.sum(0).cpu()
        self.seen.add(("residual", index))

    # ----- hooks --------------------------------------------------------------------------
    @contextmanager
    def attach(self, layers: list[int] | None = None):
        """Install the hooks for one forward pass (of ``layers`` only, for a block-streamed
        call); all are removed on exit. A full pass must have fired every hook."""
        a = self.adapter
        wanted = list(range(a.num_layers)) if layers is None else list(layers)
        with ExitStack() as stack:
            stack.enter_context(measure_attention(a, self.lengths.to(_device(a)), self._on_attention, layers=wanted,
                                                  received=True, chunk=self.chunk))
            handles = []
            stack.callback(lambda: [h.remove() for h in handles])
            if self.value_norm is not None:
                for layer in wanted:
                    for name, taps in value_taps(a, layer).items():
                        module = a.model.get_submodule(name)
                        handles.append(module.register_forward_hook(
                            lambda m, args, out, layer=layer, taps=taps: self._on_values(layer, taps, out)))
            if self.resid_norm is not None:
                if 0 in wanted:
                    handles.append(a.block(0).register_forward_pre_hook(self._block_input_hook, with_kwargs=True))
                for layer in wanted:
                    handles.append(a.block(layer).register_forward_hook(
                        lambda m, args, out, layer=layer: self._on_residual(layer + 1, first_tensor(out))))
            yield self
        if layers is None:
            self.check_complete()

    def _block_input_hook(self, module, args, kwargs):
        hidden = args[0] if args else kwargs.get("hidden_states")
        if not isinstance(hidden, torch.Tensor):
            raise CaptureError("could not find the residual stream entering block 0 (no hidden_states argument)")
        self._on_residual(0, hidden)

    def check_complete(self) -> None:
        L = self.adapter.num_layers
        want = {("attention", l) for l in range(L)}
        if self.value_norm is not None:
            want |= {("values", l) for l in range(L)}
        if self.resid_norm is not None:
            want |= {("residual", i) for i in range(L + 1)}
        missing = sorted(want - self.seen)
        if missing:
            raise CaptureError(f"hooks did not fire for {missing[:4]}; the model's forward bypasses the adapter's modules")

    # ----- per prompt ---------------------------------------------------------------------
    def prompt(self, row: int) -> PromptProbe:
        n = int(self.lengths[row])

        def cut(t: torch.Tensor | None, axis_t: int):
            if t is None:
                return None
            idx = [slice(None)] * (t.ndim - 1)
            idx[axis_t - 1] = slice(0, n)
            return t[row][tuple(idx)].numpy().copy()

        if self.resid_norm is None:
            return PromptProbe(n, cut(self.received, 3), cut(self.value_norm, 3))
        return PromptProbe(
            n, cut(self.received, 3), cut(self.value_norm, 3), cut(self.resid_norm, 2),
            cut(self.top_idx, 2), cut(self.top_val, 2), self.median_abs[row].numpy().copy(), self.dim_abs_sum[row].numpy().copy(),
        )


def _device(adapter: FamilyAdapter) -> torch.device:
    from headsurgeon.models.placement import input_device

    return input_device(adapter.model)
