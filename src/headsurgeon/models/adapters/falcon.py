"""Falcon: one fused ``query_key_value`` in three layouts, rotary or ALiBi positions.

``FalconAttention._split_heads`` decides the layout from the config:

* new decoder architecture (Falcon-40B/180B, ``new_decoder_architecture``): ``num_kv_heads``
  groups, each ``[q ... q k v]`` (``heads / kv_heads`` queries, then the group's key and value),
  ``head_dim`` rows per entry;
* multi-query (Falcon-7B, ``multi_query`` without the new architecture): ``[all Q | K | V]``, one
  key and one value shared by every head (one KV group);
* otherwise (the ALiBi Falcon-RW models): interleaved per head ``[q_h k_h v_h]`` like BLOOM.

``dense`` takes head h through its columns. The MLP is ``dense_h_to_4h`` / ``dense_4h_to_h``.

ALiBi (``alibi=True``): in transformers 5.24 the model folds the bias (``slope * key position /
sqrt(head_dim)``) into the mask it builds, and the eager attention *also* adds it explicitly, so
the eager path computes ALiBi twice while SDPA, the default, computes it once. Decision: measure
the model as it runs by default. :meth:`prepare` installs a forward pre-hook on every attention
module that hands it a zero ``alibi`` tensor, so on the eager path the bias enters once, through
the mask, exactly as under SDPA (tested: eager-with-hook logits equal SDPA logits). The model
runs on SDPA (transformers' default for Falcon) for everything else. The slopes reported are
the effective ones the logits see, from the library's ``build_alibi_tensor`` (which rounds them
to bfloat16) divided by ``sqrt(head_dim)``.

Measurement: Falcon's attention is not on transformers' attention interface, so the engine takes
the ``"projection"`` route: a hook on ``query_key_value`` splits its output by the layout, and
for the rotary models applies the model's own rotary embedding (``transformer.rotary_emb`` and
``apply_rotary_pos_emb``, positions ``0..T-1`` as the forward uses them); :meth:`score_spec`
gives ``1/sqrt(head_dim)`` and, for ALiBi models, the effective slopes.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch

from .base import FamilyAdapter, HeadRef, HeadSlices, NeuronAxes, ScoreSpec, rows

_HOOK_FLAG = "_headsurgeon_alibi_once"


def _alibi_once(module, args, kwargs):
    """Forward pre-hook: the mask already carries ALiBi; give the explicit term zeros instead."""
    if kwargs.get("alibi") is not None:
        kwargs = dict(kwargs, alibi=torch.zeros_like(kwargs["alibi"]))
        return args, kwargs
    return None


class FalconAdapter(FamilyAdapter):
    model_types = ("falcon",)
    family = "falcon"
    attention_path = "transformer.h.{layer}.self_attention"
    output_projection_path = "transformer.h.{layer}.self_attention.dense"
    block_path = "transformer.h.{layer}"
    attention_route = "projection"
    qkv_projection_path = "transformer.h.{layer}.self_attention.query_key_value"

    def __init__(self, model):
        super().__init__(model)
        cfg = self.config
        self.head_dim = self.hidden_size // self.num_heads
        if cfg.new_decoder_architecture:
            self.layout = "groups"
            self.num_kv_heads = cfg.num_kv_heads
        elif cfg.multi_query:
            self.layout = "multi_query"
            self.num_kv_heads = 1
        else:
            self.layout = "interleaved"
            self.num_kv_heads = self.num_heads

    @property
    def qkv_layout(self) -> str:  # type: ignore[override]
        return {
            "groups": "fused query_key_value, per KV group [q..q k v]",
            "multi_query": "fused query_key_value [all Q | K | V] (multi-query)",
            "interleaved": "fused query_key_value interleaved per head [q k v]",
        }[self.layout]

    def head_slices(self, layer: int, head: int) -> HeadSlices:
        self.check_head(layer, head)
        p = self.path(self.attention_path, layer)
        d, g = self.head_dim, self.kv_group(head)
        w, b = f"{p}.query_key_value.weight", f"{p}.query_key_value.bias"
        if self.layout == "groups":
            per = self.heads_per_group + 2
            q = (g * per + head % self.heads_per_group) * d
            k = (g * per + per - 2) * d
            v = (g * per + per - 1) * d
        elif self.layout == "multi_query":
            q, k, v = head * d, self.num_heads * d, (self.num_heads + 1) * d
        else:
            q, k, v = 3 * head * d, (3 * head + 1) * d, (3 * head + 2) * d
        has_bias = self.has_param(b)
        return HeadSlices(
            head=HeadRef(layer, head),
            kv_group=g,
            q_weight=rows(w, q, d),
            k_weight=rows(w, k, d),
            v_weight=rows(w, v, d),
            o_weight=rows(f"{p}.dense.weight", head * d, d, dim=1),
            q_bias=rows(b, q, d) if has_bias else None,
            k_bias=rows(b, k, d) if has_bias else None,
            v_bias=rows(b, v, d) if has_bias else None,
        )

    def neuron_axes(self, layer: int) -> NeuronAxes:
        p = f"transformer.h.{layer}.mlp"
        return NeuronAxes(up=f"{p}.dense_h_to_4h.weight", up_dim=0, down=f"{p}.dense_4h_to_h.weight", down_dim=1)

    @property
    def max_positions(self) -> int | None:
        return None if self.config.alibi else super().max_positions

    def set_attention(self, implementation: str) -> None:
        # Falcon's attention reads ``config._attn_implementation`` at every call but transformers
        # refuses to switch it dynamically ("does not follow the functional approach"): set it.
        self.config._attn_implementation = implementation

    def prepare(self) -> None:
        """Run on SDPA (the default model) and make the eager path compute ALiBi once too."""
        if getattr(self.config, "_attn_implementation", None) != "sdpa":
            self.set_attention("sdpa")
        if not self.config.alibi:
            return
        for layer in range(self.num_layers):
            module = self.attention_module(layer)
            if not getattr(module, _HOOK_FLAG, False):
                module.register_forward_pre_hook(_alibi_once, with_kwargs=True)
                setattr(module, _HOOK_FLAG, True)

    @contextmanager
    def reference_attention(self):
        """Falcon's eager path (full maps returned), with ALiBi once (:meth:`prepare`'s hook)."""
        before = getattr(self.config, "_attn_implementation", None)
        self.set_attention("eager")
        try:
            yield
        finally:
            self.set_attention(before)

    def queries_keys(self, layer: int, projection_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, T, _ = projection_output.shape
        d, H, G = self.head_dim, self.num_heads, self.num_kv_heads
        x = projection_output
        if self.layout == "groups":  # per group: [q .. q k v]
            g = x.view(B, T, G, H // G + 2, d)
            q, k = g[:, :, :, :-2].reshape(B, T, H, d), g[:, :, :, -2]
        elif self.layout == "multi_query":  # [all Q | K | V]
            q, k = x[..., : H * d].view(B, T, H, d), x[..., H * d : (H + 1) * d].view(B, T, 1, d)
        else:  # interleaved per head [q k v]
            g = x.view(B, T, H, 3, d)
            q, k = g[..., 0, :], g[..., 1, :]
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        if not self.config.alibi:  # rotary positions, computed by the model's own modules
            from transformers.models.falcon.modeling_falcon import apply_rotary_pos_emb

            positions = torch.arange(T, device=x.device)[None, :]
            cos, sin = self.model.get_submodule("transformer.rotary_emb")(x, positions)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
        return q, k

    def score_spec(self, layer: int) -> ScoreSpec:
        if not self.config.alibi:
            return ScoreSpec(scale=self.head_dim**-0.5)
        return ScoreSpec(scale=self.head_dim**-0.5, alibi_slopes=self.alibi_slopes(), alibi_bias=self._alibi_bias)

    def _alibi_bias(self, T: int) -> torch.Tensor:
        """``[heads, T]``: the bias the model adds per key position (through its mask): the
        library's bfloat16 ``slope * position``, over ``sqrt(head_dim)`` in float32."""
        from transformers.models.falcon.modeling_falcon import build_alibi_tensor

        alibi = build_alibi_tensor(torch.ones(1, T, dtype=torch.long), self.num_heads, torch.float32)
        return alibi[:, 0, :] / math.sqrt(self.head_dim)

    def alibi_slopes(self) -> torch.Tensor | None:
        if not self.config.alibi:
            return None
        from transformers.models.falcon.modeling_falcon import build_alibi_tensor

        alibi = build_alibi_tensor(torch.ones(1, 2, dtype=torch.long), self.num_heads, torch.float32)  # [heads, 1, 2]
        return ((alibi[:, 0, 1] - alibi[:, 0, 0]) / math.sqrt(self.head_dim)).clone()

    def decisions(self) -> list[str]:
        out = super().decisions()
        if self.config.alibi:
            out.append("transformers' eager Falcon adds ALiBi twice (SDPA, the default, once): headsurgeon "
                       "measures the default model, ALiBi once, on both paths")
        return out
