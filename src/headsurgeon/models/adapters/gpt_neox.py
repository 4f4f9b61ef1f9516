"""GPT-NeoX / Pythia: fused ``query_key_value`` interleaved per head, like BLOOM.

The forward views the projection as ``(heads, 3 * head_dim)`` and chunks it into q, k, v, so
rows are ``[q0 k0 v0 q1 k1 v1 ...]``. ``dense`` is an ``nn.Linear`` (columns per head).
"""

from __future__ import annotations

from .base import FamilyAdapter, HeadRef, HeadSlices, NeuronAxes, rows


class GPTNeoXAdapter(FamilyAdapter):
    model_types = ("gpt_neox",)
    family = "gpt_neox"
    attention_path = "gpt_neox.layers.{layer}.attention"
    output_projection_path = "gpt_neox.layers.{layer}.attention.dense"
    block_path = "gpt_neox.layers.{layer}"

    def head_slices(self, layer: int, head: int) -> HeadSlices:
        self.check_head(layer, head)
        p = f"gpt_neox.layers.{layer}.attention"
        d = self.head_dim
        base = head * 3 * d
        w, b = f"{p}.query_key_value.weight", f"{p}.query_key_value.bias"
        has_bias = self.has_param(b)
        return HeadSlices(
            head=HeadRef(layer, head),
            kv_group=head,
            q_weight=rows(w, base, d),
            k_weight=rows(w, base + d, d),
            v_weight=rows(w, base + 2 * d, d),
            o_weight=rows(f"{p}.dense.weight", head * d, d, dim=1),
            q_bias=rows(b, base, d) if has_bias else None,
            k_bias=rows(b, base + d, d) if has_bias else None,
            v_bias=rows(b, base + 2 * d, d) if has_bias else None,
        )

    def neuron_axes(self, layer: int) -> NeuronAxes:
        p = f"gpt_neox.layers.{layer}.mlp"
        return NeuronAxes(up=f"{p}.dense_h_to_4h.weight", up_dim=0, down=f"{p}.dense_4h_to_h.weight", down_dim=1)
