"""The measurement engine: per-head statistics computed inside each layer's attention call.

headsurgeon registers its own attention function, ``"headsurgeon"``, in transformers'
attention interface (``AttentionInterface`` / ``ALL_ATTENTION_FUNCTIONS``, with the SDPA mask
builder registered under the same name). :meth:`FamilyAdapter.prepare` selects it for every
family whose attention module dispatches through that interface. Outside a measurement it *is*
transformers' SDPA function (same arguments, same result), so training, perplexity and
generation run as fast as with SDPA. Inside :func:`measure_attention` the call for a measured
layer also computes :class:`~headsurgeon.capture.rowstats.RowStats` from its own query, key and
value states and hands them to a callback while the forward pass runs:

* plain causal attention on CPU (optionally padded or windowed through a boolean mask): one
  fused flash-kernel call gives output and statistics together (:func:`fused_row_stats`);
* anything else (soft-capped scores, other devices, attention received per key): the output
  from SDPA and the statistics from explicit scores in chunks of query rows
  (:func:`chunked_row_stats`), memory ``O(chunk x T)``.

Families whose attention is not on the interface (BLOOM) declare a *projection route* in their
adapter: a forward hook on the fused QKV projection hands the adapter's split of its output to
:func:`chunked_row_stats` together with the adapter's score modifiers (ALiBi slopes).

Every layer's statistics are validated (finite, in range) and, on the fused route, a few
seeded rows per layer are recomputed from explicit scores and compared (:mod:`.checks`). A layer
whose attention never reaches the engine (another backend selected, a forward that bypasses the
adapter's modules) is an error after the forward, never a missing or zero statistic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from headsurgeon.errors import CaptureError

from .checks import check_row_stats, spot_check
from .rowstats import RowStats, chunked_row_stats, fused_row_stats

#: The name under which the engine is registered in transformers' attention interface.
ENGINE = "headsurgeon"


@dataclass
class LayerStats:
    """One layer's statistics for a right-padded batch; ``lengths`` are the real token counts."""

    layer: int
    rows: RowStats
    lengths: torch.Tensor

    def valid_queries(self) -> torch.Tensor:
        """``[batch, T]`` boolean mask of real query positions."""
        t = torch.arange(self.rows.bos.shape[-1], device=self.lengths.device)
        return t[None, :] < self.lengths[:, None]


@dataclass
class _Session:
    layers: dict[int, int]  # id(attention module) -> layer
    lengths: torch.Tensor
    on_layer: Callable[[LayerStats], None]
    received: bool
    chunked: bool
    chunk: int | None
    validate: bool
    spot_rows: int
    generator: torch.Generator
    wanted: frozenset[int] = frozenset()
    stop_when_done: bool = False
    seen: list[int] = field(default_factory=list)

    def received_weights(self, T: int, device) -> torch.Tensor | None:
        """Queries counted for attention received: real and not position 0 (see ``extremes.sinks``)."""
        if not self.received:
            return None
        t = torch.arange(T, device=device)
        return ((t[None, :] < self.lengths.to(device)[:, None]) & (t[None, :] >= 1)).float()

    def deliver(self, layer: int, rows: RowStats, dtype: torch.dtype, inputs: tuple | None) -> None:
        lengths = self.lengths.to(rows.bos.device)
        if self.validate:
            check_row_stats(layer, rows, lengths, dtype)
            if inputs is not None:
                spot_check(layer, rows, lengths, *inputs, rows_per_batch=self.spot_rows, generator=self.generator)
        self.seen.append(layer)
        self.on_layer(LayerStats(layer=layer, rows=rows, lengths=lengths))
        if self.stop_when_done and self.wanted <= set(self.seen):
            raise _AllLayersMeasured


_ACTIVE: list[_Session] = []


class _AllLayersMeasured(Exception):
    """Raised after the last wanted layer when the rest of the forward pass is not needed."""


def _sdpa(*args, **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward(*args, **kwargs)


def engine_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
):
    """transformers' attention-function signature; returns ``(output [B, T, H, dv], None)`` as SDPA does."""
    session = _ACTIVE[-1] if _ACTIVE else None
    layer = None if session is None else session.layers.get(id(module))
    softcap = kwargs.get("softcap")
    sinks = kwargs.get("s_aux")
    if layer is None:
        if softcap is not None or sinks is not None:  # SDPA has neither: the family's eager arithmetic
            scale = scaling if scaling is not None else query.shape[-1] ** -0.5
            return _eager_output(module, query, key, value, attention_mask, scale, softcap, sinks, dropout)
        return _sdpa(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    T = query.shape[-2]
    if key.shape[-2] != T:
        raise CaptureError(f"layer {layer}: measuring needs a full forward without a cache (got {T} queries over {key.shape[-2]} keys); pass use_cache=False")
    if dropout and module.training:
        raise CaptureError(f"layer {layer}: attention dropout is active; put the model in eval mode before measuring")
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    float_bias = attention_mask is not None and attention_mask.dtype != torch.bool and not _zero_or_min(attention_mask)
    fused = (query.device.type == "cpu" and softcap is None and sinks is None and not float_bias
             and not session.received and not session.chunked)
    if fused:
        out, rows = fused_row_stats(query, key, value, scale=scale, mask=attention_mask)
        session.deliver(layer, rows, query.dtype, (query, key, scale, attention_mask))
        return out.transpose(1, 2).contiguous(), None
    rows = chunked_row_stats(
        query, key, scale=scale, mask=attention_mask, softcap=softcap,
        received_weights=session.received_weights(T, query.device), chunk=session.chunk, sink_logits=sinks,
    )
    session.deliver(layer, rows, query.dtype, None)
    if softcap is not None or sinks is not None:  # SDPA has neither soft-caps nor sinks: eager arithmetic
        return _eager_output(module, query, key, value, attention_mask, scale, softcap, sinks, dropout)
    return _sdpa(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)


def _zero_or_min(mask: torch.Tensor) -> bool:
    """Whether a float mask only hides (0 or the dtype's minimum), i.e. carries no bias."""
    return bool(((mask == 0) | (mask <= torch.finfo(mask.dtype).min / 2)).all())


def _eager_output(module, query, key, value, mask, scale, softcap=None, sinks=None, dropout=0.0):
    """The attention output the way transformers' eager functions compute it, for what SDPA lacks:
    soft-capped scores (Gemma 2: ``cap * tanh(s / cap)`` before the mask) and learned sink logits
    (gpt-oss: one more softmax column per head, dropped before the values)."""
    from .rowstats import additive_mask, repeat_kv

    H = query.shape[1]
    s = scale * (query @ repeat_kv(key, H).transpose(-1, -2))
    if softcap is not None:
        s = softcap * torch.tanh(s / softcap)
    m = additive_mask(mask, s.dtype)
    if m is None:
        T, S = query.shape[-2], key.shape[-2]
        m = torch.zeros(T, S, dtype=s.dtype, device=s.device).masked_fill(
            torch.ones(T, S, dtype=torch.bool, device=s.device).triu(S - T + 1), torch.finfo(s.dtype).min)
    s = s + m
    if sinks is not None:
        z = sinks.reshape(1, -1, 1, 1).expand(*s.shape[:-1], 1).to(s.dtype)
        full = torch.cat([s, z], dim=-1)
        full = full - full.max(dim=-1, keepdim=True).values
        p = torch.softmax(full, dim=-1, dtype=full.dtype)[..., :-1].to(query.dtype)
    else:
        p = torch.softmax(s, dim=-1, dtype=torch.float32).to(query.dtype)
    p = torch.nn.functional.dropout(p, p=dropout, training=module.training)
    return (p @ repeat_kv(value, H)).transpose(1, 2).contiguous(), None


def register_engine() -> None:
    """Register ``"headsurgeon"`` in transformers' attention and mask interfaces (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    if ENGINE not in AttentionInterface._global_mapping:
        AttentionInterface.register(ENGINE, engine_attention)
        ALL_MASK_ATTENTION_FUNCTIONS.register(ENGINE, sdpa_mask)


@contextmanager
def measure_attention(
    adapter,
    lengths: torch.Tensor,
    on_layer: Callable[[LayerStats], None],
    *,
    layers: Sequence[int] | None = None,
    received: bool = False,
    route: str = "auto",
    chunk: int | None = None,
    validate: bool = True,
    spot_rows: int = 2,
    seed: int = 0,
    stop_when_done: bool = False,
    modules: dict[int, torch.nn.Module] | None = None,
) -> Iterator[_Session]:
    """Within this context, each forward pass calls ``on_layer`` once per measured layer.

    ``lengths``: real lengths of the right-padded batch about to run. ``layers``: which layers
    (default all; a block-by-block caller may run one block at a time inside the context).
    ``received``: also compute attention received per key (chunked route). ``route``: ``"auto"``
    (fused where it applies) or ``"chunked"`` (always explicit scores; the tests use it to cross
    chunk boundaries). ``chunk``: query rows per step on the chunked route. ``validate``: range checks and ``spot_rows`` seeded spot checks
    per layer. ``stop_when_done``: end the forward pass as soon as the last wanted layer is
    measured (the remaining MLP, final norm and head are not computed; for callers that need
    nothing else, like the diagnosis; the model's output is then not available). Use
    :func:`check_all_layers` after the forward to insist that every layer was seen. ``modules``:
    ``{layer: module}`` to measure in place of the adapter's own (the attention module, or on the
    projection route the QKV projection), for a caller that builds each decoder block itself,
    e.g. one streamed from disk.
    """
    if route not in ("auto", "chunked"):
        raise ValueError(f"route must be 'auto' or 'chunked', not {route!r}")
    wanted = list(range(adapter.num_layers)) if layers is None else list(layers)
    generator = torch.Generator().manual_seed(seed)
    session = _Session(
        layers={}, lengths=lengths, on_layer=on_layer, received=received, chunked=route == "chunked", chunk=chunk,
        validate=validate, spot_rows=spot_rows, generator=generator, wanted=frozenset(wanted), stop_when_done=stop_when_done,
    )
    handles = []
    if adapter.attention_route == "interface":
        register_engine()
        impl = getattr(adapter.config, "_attn_implementation", None)
        if impl != ENGINE:
            raise CaptureError(
                f"the model's attention implementation is '{impl}', which the engine cannot measure; "
                "load it with headsurgeon.load_model (or call adapter.prepare()) to select 'headsurgeon'"
            )
        session.layers = {id(modules[l] if modules else adapter.attention_module(l)): l for l in wanted}
    else:
        for layer in wanted:
            module = modules[layer] if modules else adapter.projection_module(layer)
            handles.append(module.register_forward_hook(_projection_hook(adapter, session, layer)))
    _ACTIVE.append(session)
    try:
        yield session
    except _AllLayersMeasured:
        pass  # the pass was cut short on purpose: every wanted layer is measured
    finally:
        _ACTIVE.remove(session)
        for h in handles:
            h.remove()


def _projection_hook(adapter, session: _Session, layer: int):
    def hook(module, args, output):
        spec = adapter.score_spec(layer)
        query, key = adapter.queries_keys(layer, output)
        T = query.shape[-2]
        key_bias = spec.alibi_bias(T) if spec.alibi_bias is not None else spec.alibi_slopes
        rows = chunked_row_stats(
            query.detach(), key.detach(), scale=spec.scale, key_bias=key_bias, softcap=spec.softcap,
            received_weights=session.received_weights(T, query.device), chunk=session.chunk,
        )
        session.deliver(layer, rows, query.dtype, None)

    return hook


def check_all_layers(session: _Session, layers: Sequence[int]) -> None:
    """Raise unless every layer of ``layers`` was measured exactly once since the last call."""
    seen = sorted(session.seen)
    session.seen.clear()
    if seen != sorted(layers):
        raise CaptureError(
            f"attention was measured for layers {seen} of {sorted(layers)}; the model's forward bypasses the "
            "adapter's attention modules or another attention backend is selected"
        )
