"""The eager reference: full per-head attention maps captured through hooks.

The measurement engine (:mod:`.engine`) has replaced this path everywhere a statistic is
measured; it stays as the reference the tests compare the engine with (the maps are the
probabilities transformers' eager attention multiplies with its values).

How the weights are obtained: every supported family's attention module returns
``(attn_output, attn_weights)`` from its forward. On the eager path (which
:meth:`FamilyAdapter.prepare` selects; BLOOM always computes probabilities explicitly) those
weights are the softmax probabilities the layer actually multiplied with its values, the same
tensor ``output_attentions=True`` would collect. We put a forward hook on each layer's
attention module, hand the layer's weights to a callback *while the forward pass runs*, and
let them go: the callback reduces them to per-head statistics, so at most one layer's maps are
alive at a time (``output_attentions=True`` keeps every layer's maps until the pass ends).

Every captured map is checked: rows of real query positions sum to 1 and nothing lies above
the causal diagonal. A backend that returns no weights (SDPA, flash attention) is an error,
never a silent zero.

Family declarations travel with each batch: ``window`` (the layer's sliding window, so BOS mass
can be taken over the rows that can see position 0) and ``sink`` (gpt-oss: the share of each
row taken by the learned sink; the adapter's attention function returns it as a last column,
which is split off here, so the real keys' weights plus the sink sum to 1 and the check stays
exact).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import torch

from headsurgeon.errors import CaptureError
from headsurgeon.models.adapters import FamilyAdapter


@dataclass
class AttentionBatch:
    """One layer's attention for a right-padded batch.

    ``weights``: ``[batch, heads, T, T]`` probabilities (rows = queries). ``lengths``: real
    token count per sequence; query/key positions ``>= length`` are padding and carry no meaning.
    """

    layer: int
    weights: torch.Tensor
    lengths: torch.Tensor
    #: Sliding window of this layer (query t sees key j when t - j < window); None: global.
    window: int | None = None
    #: ``[batch, heads, T]`` share of each row taken by a learned sink (gpt-oss); None: no sink.
    sink: torch.Tensor | None = None

    def valid_queries(self) -> torch.Tensor:
        """``[batch, T]`` boolean mask of real query positions."""
        t = torch.arange(self.weights.shape[-1], device=self.weights.device)
        return t[None, :] < self.lengths[:, None].to(t.device)

    def bos_visible(self) -> torch.Tensor:
        """``[T]`` boolean: which query positions can see position 0 (all of them unless windowed)."""
        t = torch.arange(self.weights.shape[-1], device=self.weights.device)
        return t < self.window if self.window is not None else torch.ones_like(t, dtype=torch.bool)


def check_attention_map(batch: AttentionBatch, *, atol: float = 1e-3) -> None:
    """Fail loudly unless real rows sum to 1 and the map is causal (zero above the diagonal).

    Written to cost little next to the forward pass (it runs on every layer of every batch):
    the full-map NaN/inf scan runs only when a row sum is already non-finite (a NaN or inf
    entry always makes its row sum non-finite), and the causal check takes a per-row maximum of
    the upper triangle instead of gathering it with ``masked_select`` (3.5x faster on CPU for 8 x 9 x 512 x 512 maps).
    """
    w = batch.weights
    row_sums = w.sum(-1)  # [B, H, T]
    if batch.sink is not None:
        row_sums = row_sums + batch.sink  # the sink's share completes each row
    if not torch.isfinite(row_sums).all() and not torch.isfinite(w).all():
        raise CaptureError(f"layer {batch.layer}: attention weights contain NaN or inf; run in float32")
    valid = batch.valid_queries()  # [B, T]
    bad = ((row_sums - 1).abs() > atol) & valid[:, None, :]
    if bad.any():
        worst = (row_sums - 1).abs()[bad].max().item()
        raise CaptureError(f"layer {batch.layer}: attention rows do not sum to 1 (off by {worst:.2e}); the backend is not returning probabilities")
    above = w.triu(1).abs_().amax(-1)  # [B, H, T]: largest |weight| above the diagonal per row
    leak = torch.where(valid[:, None, :], above, torch.zeros((), dtype=above.dtype)).max()
    if leak > atol:
        raise CaptureError(f"layer {batch.layer}: attention above the causal diagonal ({leak.item():.2e}); is the model causal?")


def row_sum_tolerance(dtype: torch.dtype) -> float:
    """How far from 1 a row of probabilities of ``dtype`` may sum: 1e-3 in float32; in bf16
    (8 significant bits) rounding alone moves a row sum by up to ~4e-3, so half-precision
    models get two units of their precision instead of being refused as "not probabilities"."""
    return max(1e-3, 2 * torch.finfo(dtype).eps) if dtype.is_floating_point else 1e-3


@contextmanager
def stream_attention(
    adapter: FamilyAdapter,
    lengths: torch.Tensor,
    on_layer: Callable[[AttentionBatch], None],
    *,
    layers: list[int] | None = None,
    validate: bool = True,
) -> Iterator[None]:
    """Within this context, every forward pass calls ``on_layer`` once per layer with its weights.

    ``lengths`` are the real lengths of the batch about to be run (right padding). The model
    runs transformers' eager attention inside the context. Hooks are always removed on exit,
    even on error.
    """
    handles = []

    def make_hook(layer: int):
        def hook(module, args, output):
            weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
            if weights is None:
                raise CaptureError(
                    f"layer {layer}: the attention backend returned no weights; load the model with "
                    "attn_implementation='eager' (headsurgeon.load_model does this)"
                )
            weights = weights.detach()
            sink = None
            if adapter.sink_column:  # [..., T + 1]: the real keys, then the sink's share
                if weights.shape[-1] != weights.shape[-2] + 1:
                    raise CaptureError(
                        f"layer {layer}: attention rows do not sum to 1: this {adapter.family} model's weights come "
                        "without the learned sink's column; load it with headsurgeon.load_model (it selects the "
                        "sink-column attention path)"
                    )
                weights, sink = weights[..., :-1], weights[..., -1].float()
            batch = AttentionBatch(layer=layer, weights=weights.float(), lengths=lengths,
                                   window=adapter.attention_window(layer), sink=sink)
            if validate:
                check_attention_map(batch, atol=row_sum_tolerance(weights.dtype))
            on_layer(batch)

        return hook

    wanted = range(adapter.num_layers) if layers is None else layers
    stack = ExitStack()
    try:
        stack.enter_context(adapter.reference_attention())
        for layer in wanted:
            handles.append(adapter.attention_module(layer).register_forward_hook(make_hook(layer)))
        yield
    finally:
        for h in handles:
            h.remove()
        stack.close()
