"""The one place that knows where a head's weights live.

Every model family stores attention differently (BLOOM fuses Q/K/V and interleaves them per
head, GPT-2 stores a transposed Conv1D, Llama-family models use separate projections and
grouped-query attention). A :class:`FamilyAdapter` answers the same few questions for every
family, declaratively, so that diagnosis, surgery, ablation and the extreme-token probes never
look at a layout themselves:

* which module computes a layer's attention, and how the measurement engine reaches its scores
  (``attention_route``: through transformers' attention interface, or, for families whose
  attention module is not on it, from the QKV projection's output plus the adapter's
  :class:`ScoreSpec`: scale, ALiBi slopes, soft-cap);
* for head ``h`` of layer ``l``: the Q, K, V weight (and bias) regions and the output-projection
  region, each a :class:`TensorSlice` (one contiguous range along one dimension of one
  parameter), and which KV group the head reads;
* which module's *input* is the concatenation of the head outputs (the output projection), so a
  head can be ablated with one pre-hook;
* where each MLP neuron's input and output weights are (for the dormancy measure).

Families also differ in what their attention *computes*. Each such difference is a
declaration here, read by every capture path and shown in every output (``describe()["attention"]``):

* :meth:`attention_window`: a sliding-window layer's window (query ``t`` sees key ``j`` only
  when ``t - j < window``, so rows ``t >= window`` cannot see position 0);
* :meth:`attention_softcap`: a soft-cap on the scores (Gemma 2: ``cap * tanh(s / cap)``);
* :meth:`sink_parameter`: a learned per-head sink logit competing with the real keys (gpt-oss);
* :meth:`alibi_slopes`: per-head ALiBi slopes, from the library's own code;
* :attr:`qk_norm_scope` and :meth:`shared_parameters`: query/key norms and any other attention
  parameter that belongs to no single head (kept frozen by surgery), and whether re-initialising
  one head changes the others (:attr:`surgery_is_local`, with :meth:`surgery_warnings`).

Adding a family means writing one small subclass and registering it in ``registry.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn


@dataclass(frozen=True, order=True)
class HeadRef:
    """An explicit reference to one attention head (both indices zero-based)."""

    layer: int
    head: int

    def __str__(self) -> str:
        return f"L{self.layer}H{self.head}"


@dataclass(frozen=True)
class TensorSlice:
    """A contiguous range ``[start, stop)`` along dimension ``dim`` of parameter ``param``.

    ``features_dim`` says which dimension of the weight indexes the module's *output* features
    (0 for ``nn.Linear``, 1 for GPT-2's ``Conv1D``); slicing that dimension selects output
    features ``start..stop`` of the module's result, which is how value states are read.
    """

    param: str
    dim: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start

    def index(self, ndim: int) -> tuple:
        """An indexing tuple selecting this region from a tensor with ``ndim`` dimensions."""
        idx = [slice(None)] * ndim
        idx[self.dim] = slice(self.start, self.stop)
        return tuple(idx)

    def view(self, tensor: torch.Tensor) -> torch.Tensor:
        """The region of ``tensor`` (a view, not a copy)."""
        return tensor[self.index(tensor.ndim)]


@dataclass(frozen=True)
class HeadSlices:
    """Where one head lives. Bias entries are ``None`` when the projection has no bias."""

    head: HeadRef
    kv_group: int
    q_weight: TensorSlice
    k_weight: TensorSlice
    v_weight: TensorSlice
    o_weight: TensorSlice
    q_bias: TensorSlice | None
    k_bias: TensorSlice | None
    v_bias: TensorSlice | None

    def qkv_regions(self) -> list[TensorSlice]:
        """Q, K, V weight and bias regions (the ones surgery re-initialises)."""
        regions = [self.q_weight, self.k_weight, self.v_weight]
        regions += [b for b in (self.q_bias, self.k_bias, self.v_bias) if b is not None]
        return regions

    def all_regions(self) -> list[TensorSlice]:
        return self.qkv_regions() + [self.o_weight]


@dataclass(frozen=True)
class NeuronAxes:
    """Where MLP neuron ``i`` reads and writes: ``up`` index ``i`` along ``up_dim``, ``down`` along ``down_dim``."""

    up: str
    up_dim: int
    down: str
    down_dim: int


@dataclass(frozen=True)
class ScoreSpec:
    """How a layer turns queries and keys into scores, for routes that compute them itself.

    ``scale`` multiplies ``q . k``; ``alibi_slopes [heads]`` add ``slope_h * key position`` (BLOOM's
    convention; a per-row constant does not change a softmax); ``softcap`` maps scores to
    ``softcap * tanh(s / softcap)``.
    """

    scale: float
    alibi_slopes: torch.Tensor | None = None
    softcap: float | None = None
    #: ``T -> [heads, T]`` bias per key position, used instead of ``alibi_slopes * position`` when
    #: a family's ALiBi is not exactly that product in float32 (Falcon rounds it to bfloat16).
    alibi_bias: Callable[[int], torch.Tensor] | None = None


class FamilyAdapter:
    """Base class: subclasses fill in the class attributes and :meth:`head_slices`.

    Paths are relative to the model root and contain ``{layer}``; they name modules and
    parameters exactly as ``model.named_modules()`` / ``named_parameters()`` do.
    """

    #: ``config.model_type`` values this adapter serves.
    model_types: ClassVar[tuple[str, ...]] = ()
    #: Human-readable family name used in messages and outputs.
    family: ClassVar[str] = ""
    #: Module whose forward returns ``(attn_output, attn_weights)``.
    attention_path: ClassVar[str] = ""
    #: Module whose input's last dimension is ``[head0 | head1 | ...]`` (the output projection).
    output_projection_path: ClassVar[str] = ""
    #: Decoder block whose output is the residual stream after the layer (a tensor, or a tuple
    #: whose first item is that tensor, depending on the family: use :meth:`block_hidden`).
    block_path: ClassVar[str] = ""
    #: How the measurement engine (:mod:`headsurgeon.capture.engine`) reaches a layer's scores:
    #: ``"interface"`` (the attention module calls transformers' attention interface, where the
    #: engine is registered) or ``"projection"`` (a hook on ``qkv_projection_path`` and
    #: :meth:`queries_keys` / :meth:`score_spec`, for attention modules not on the interface).
    attention_route: ClassVar[str] = "interface"
    #: The fused QKV projection (``"projection"`` route only).
    qkv_projection_path: ClassVar[str] = ""
    #: Whether a block's forward returns a tuple ``(hidden, ...)`` rather than the bare hidden
    #: tensor (the block-streamed path returns the same shape from its stand-in blocks).
    block_returns_tuple: ClassVar[bool] = False
    #: Which dimension of a projection weight indexes the module's *output* features: 0 for
    #: ``nn.Linear`` (``[out, in]``, ``y = x W^T + b``), 1 for GPT-2's ``Conv1D`` (``[in, out]``,
    #: ``y = x W + b``). Surgery uses it to compute a slice's contribution on its own.
    weight_output_dim: ClassVar[int] = 0
    #: Whether training steps may switch to PyTorch's fused SDPA attention (families whose
    #: attention is not pluggable in ``transformers``, like BLOOM, stay eager).
    sdpa_for_training: ClassVar[bool] = True
    #: How Q, K and V are stored (shown in outputs; the slices say it exactly).
    qkv_layout: ClassVar[str] = "separate q/k/v projections"
    #: ``None`` (no query/key norm), ``"head_dim"`` (one norm weight shared by every head of a
    #: layer, over head_dim: frozen, a head's surgery leaves it alone) or ``"all_heads"`` (the
    #: norm runs over all heads together before the split: heads are coupled).
    qk_norm_scope: ClassVar[str | None] = None
    #: Whether re-initialising one head leaves every other head's attention unchanged.
    surgery_is_local: ClassVar[bool] = True
    #: Whether the attention module's weights carry one extra, last column: the share of each row
    #: taken by a learned sink (gpt-oss). The real keys' weights then sum to 1 minus that share.
    sink_column: ClassVar[bool] = False
    #: Whether the attention module receives a boolean mask with ``True`` marking *masked* keys
    #: (MPT) instead of an additive float mask.
    boolean_mask_marks_masked: ClassVar[bool] = False

    def __init__(self, model: nn.Module):
        self.model = model
        self.config = model.config
        cfg = self.config
        self.num_layers: int = cfg.num_hidden_layers
        self.num_heads: int = cfg.num_attention_heads
        self.num_kv_heads: int = getattr(cfg, "num_key_value_heads", None) or self.num_heads
        self.hidden_size: int = cfg.hidden_size
        self.head_dim: int = getattr(cfg, "head_dim", None) or self.hidden_size // self.num_heads
        self._params = dict(model.named_parameters())

    # ----- questions every family answers -------------------------------------------------
    def head_slices(self, layer: int, head: int) -> HeadSlices:
        raise NotImplementedError

    def neuron_axes(self, layer: int) -> NeuronAxes:
        raise NotImplementedError

    def alibi_slopes(self) -> torch.Tensor | None:
        """Per-head ALiBi slopes from the library's own code, or ``None`` if not an ALiBi model."""
        return None

    def attention_window(self, layer: int) -> int | None:
        """Sliding window of ``layer`` (``None``: global attention).

        transformers' sliding mask lets query ``t`` see key ``j`` when ``t - j < window``. Models
        with ``layer_types`` (Gemma 2/3, gpt-oss, Qwen2/3) window only their
        ``sliding_attention`` layers; Mistral and Phi-3 window every layer when
        ``sliding_window`` is set.
        """
        window = getattr(self.config, "sliding_window", None)
        if not isinstance(window, int) or window <= 0:
            return None
        types = getattr(self.config, "layer_types", None)
        if types is not None:
            return window if types[layer] == "sliding_attention" else None
        return window

    def attention_softcap(self) -> float | None:
        """Soft-cap applied to the attention scores before the softmax (``None``: none)."""
        return None

    def sink_parameter(self, layer: int) -> str | None:
        """Name of ``layer``'s learned per-head sink logits (``[heads]``), or ``None``."""
        return None

    def sink_logits(self) -> torch.Tensor | None:
        """``[layers, heads]`` learned sink logits, or ``None`` for families without them."""
        if self.sink_parameter(0) is None:
            return None
        params = [self.parameter(self.sink_parameter(l)) for l in range(self.num_layers)]
        if any(p.is_meta for p in params):  # block-streamed: the weights are not in memory
            return None
        return torch.stack([p.detach().float().cpu() for p in params])

    def shared_parameters(self, layer: int) -> list[str]:
        """Attention parameters of ``layer`` that belong to no single head (q/k norm weights, the
        learned sinks): surgery keeps them frozen and bit-identical."""
        return []

    def surgery_warnings(self) -> list[str]:
        """What a user must know before operating on this family (empty when surgery is local)."""
        return []

    def neuron_vectors(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(up, down)``, each ``[neurons, features]``: what MLP neuron ``i`` reads and writes."""
        axes = self.neuron_axes(layer)
        up = self.parameter(axes.up).detach().float().movedim(axes.up_dim, 0)
        down = self.parameter(axes.down).detach().float().movedim(axes.down_dim, 0)
        return up.reshape(up.shape[0], -1), down.reshape(down.shape[0], -1)

    # ----- shared helpers -----------------------------------------------------------------
    @property
    def heads_per_group(self) -> int:
        return self.num_heads // self.num_kv_heads

    def kv_group(self, head: int) -> int:
        """The KV head that query head ``head`` reads (grouped-query attention)."""
        return head // self.heads_per_group

    def heads_in_group(self, group: int) -> list[int]:
        return list(range(group * self.heads_per_group, (group + 1) * self.heads_per_group))

    def all_heads(self) -> list[HeadRef]:
        return [HeadRef(l, h) for l in range(self.num_layers) for h in range(self.num_heads)]

    def path(self, template: str, layer: int) -> str:
        return template.format(layer=layer)

    def module(self, template: str, layer: int) -> nn.Module:
        return self.model.get_submodule(self.path(template, layer))

    def attention_module(self, layer: int) -> nn.Module:
        return self.module(self.attention_path, layer)

    def output_projection(self, layer: int) -> nn.Module:
        return self.module(self.output_projection_path, layer)

    def block(self, layer: int) -> nn.Module:
        return self.module(self.block_path, layer)

    @staticmethod
    def block_hidden(output) -> torch.Tensor:
        """The ``[batch, T, hidden]`` residual stream from a block's forward output.

        BLOOM blocks return a tuple, the other families (transformers 5) a bare tensor, whose
        ``[0]`` would silently be the first *sequence* instead.
        """
        return output[0] if isinstance(output, (tuple, list)) else output

    def parameter(self, name: str) -> nn.Parameter:
        return self._params[name]

    def has_param(self, name: str) -> bool:
        return name in self._params

    @property
    def max_positions(self) -> int | None:
        """Longest sequence the model's position table allows (``None``: no table, e.g. ALiBi)."""
        for key in ("max_position_embeddings", "n_positions"):
            value = getattr(self.config, key, None)
            if isinstance(value, int) and value > 0:
                return value
        return None

    def head_output_range(self, head: int) -> tuple[int, int]:
        """Range of head ``head`` inside the output projection's input features."""
        return head * self.head_dim, (head + 1) * self.head_dim

    def check_head(self, layer: int, head: int) -> None:
        from headsurgeon.errors import HeadsurgeonError

        if not (0 <= layer < self.num_layers and 0 <= head < self.num_heads):
            raise HeadsurgeonError(
                f"head L{layer}H{head} does not exist in this {self.family} model "
                f"({self.num_layers} layers x {self.num_heads} heads); use zero-based indices in range"
            )

    def prepare(self) -> None:
        """Select headsurgeon's measuring attention function (SDPA whenever nothing is measured)
        for families on transformers' attention interface."""
        if self.attention_route != "interface":
            return
        from headsurgeon.capture.engine import ENGINE, register_engine

        register_engine()
        if getattr(self.config, "_attn_implementation", None) != ENGINE:
            self.set_attention(ENGINE)

    def set_attention(self, implementation: str) -> None:
        """Switch the model's attention path (families that ignore the dynamic switch override this)."""
        self.model.set_attn_implementation(implementation)

    def score_spec(self, layer: int) -> ScoreSpec:
        """How layer ``layer`` scores keys (``"projection"`` route): plain ``1/sqrt(head_dim)``."""
        return ScoreSpec(scale=self.head_dim**-0.5)

    def projection_module(self, layer: int) -> nn.Module:
        return self.module(self.qkv_projection_path, layer)

    def queries_keys(self, layer: int, projection_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(query [B, H, T, d], key [B, kv_heads, T, d])`` from the QKV projection's output."""
        raise NotImplementedError(f"{self.family} computes attention through the attention interface")

    @contextmanager
    def reference_attention(self):
        """transformers' eager attention (full probability maps returned) inside the block: the
        reference the engine is compared with. BLOOM's attention always returns its maps."""
        before = getattr(self.config, "_attn_implementation", "eager")
        if self.attention_route != "interface" or before == "eager":
            yield
            return
        self.set_attention("eager")
        try:
            yield
        finally:
            self.set_attention(before)

    @contextmanager
    def training_attention(self):
        """transformers' SDPA attention inside the block, the measuring engine again afterwards
        (outside a measurement the two compute the same thing; this keeps training free of the
        engine's bookkeeping)."""
        before = getattr(self.config, "_attn_implementation", "eager")
        if not self.sdpa_for_training or before == "sdpa":
            yield
            return
        self.set_attention("sdpa")
        try:
            yield
        finally:
            self.set_attention(before)

    def attention_traits(self) -> dict:
        """What this family's attention adds and what headsurgeon decided for it (every output
        carries this under ``model.attention``)."""
        windows = [self.attention_window(l) for l in range(self.num_layers)]
        sinks = self.sink_parameter(0) is not None
        return {
            "qkv_layout": self.qkv_layout,
            "qk_norm": self.qk_norm_scope,
            "surgery_local": self.surgery_is_local,
            "shared_frozen_parameters": [n.removeprefix(self.path(self.attention_path, 0) + ".")
                                         for n in self.shared_parameters(0)],
            "alibi": self.alibi_slopes() is not None,
            "softcap": self.attention_softcap(),
            "learned_sinks": sinks,
            "sliding_windows": windows if any(w is not None for w in windows) else None,
            "training_attention": "sdpa" if self.sdpa_for_training else "eager",
            "decisions": self.decisions(),
            "warnings": self.surgery_warnings(),
        }

    def decisions(self) -> list[str]:
        """One sentence per family specific: what it is and how headsurgeon treats it."""
        out = []
        if self.qk_norm_scope == "head_dim":
            out.append("q/k norms run over head_dim with one weight shared by every head of a layer: "
                       "frozen, a head's surgery leaves them untouched")
        if self.qk_norm_scope == "all_heads":
            out.append("the q/k norms run over all heads of a layer together: re-initialising one head "
                       "changes every head's normalised query (surgery is not local); the norm weights stay frozen")
        if any(self.attention_window(l) is not None for l in range(self.num_layers)):
            out.append("sliding-window layers: BOS mass is the mean over the query rows that can see "
                       "position 0 (t < window), reported per layer type with the rows counted")
        if self.attention_softcap() is not None:
            out.append(f"attention scores are soft-capped at {self.attention_softcap():g}: every statistic is of "
                       "the capped scores' softmax, as the model computes it")
        if self.sink_parameter(0) is not None:
            out.append("a learned sink logit per head absorbs part of each row: BOS and local mass are the "
                       "weights on real keys, sink mass is reported beside them, entropy counts the sink as "
                       "one more outcome; surgery keeps the sink logits frozen")
        if self.alibi_slopes() is not None:
            out.append("ALiBi: per-head slopes from the library's own code, reported against BOS mass")
        if not self.sdpa_for_training:
            out.append("training steps stay on the eager path (transformers refuses SDPA for this family)")
        return out

    def describe(self) -> dict:
        return {
            "family": self.family,
            "model_type": self.config.model_type,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "num_kv_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_size": self.hidden_size,
            "attention": self.attention_traits(),
        }


def rows(param: str, start: int, size: int, dim: int = 0) -> TensorSlice:
    """Shorthand for a slice of ``size`` entries starting at ``start`` along ``dim``."""
    return TensorSlice(param, dim, start, start + size)
