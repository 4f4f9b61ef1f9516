"""Phi-3: one fused ``qkv_proj`` laid out ``[all Q | all K | all V]``, grouped-query attention.

``qkv_proj.weight`` has ``(heads + 2 * kv_heads) * head_dim`` rows: the queries of every head
first, then one key block per KV head, then one value block per KV head (the forward slices the
output at ``heads * d`` and ``heads * d + kv_heads * d``). ``o_proj`` takes head h through its
columns ``[h*d, (h+1)*d)``. The MLP fuses gate and up: ``gate_up_proj`` rows are
``[gate | up]``, so neuron i reads through row ``intermediate + i``. Phi-3 has no q/k/v biases.
"""

from __future__ import annotations

import torch

from .base import FamilyAdapter, HeadRef, HeadSlices, NeuronAxes, rows


class Phi3Adapter(FamilyAdapter):
    model_types = ("phi3",)
    family = "phi3"
    attention_path = "model.layers.{layer}.self_attn"
    output_projection_path = "model.layers.{layer}.self_attn.o_proj"
    block_path = "model.layers.{layer}"
    qkv_layout = "fused qkv_proj [all Q | all K | all V]"

    def head_slices(self, layer: int, head: int) -> HeadSlices:
        self.check_head(layer, head)
        p = self.path(self.attention_path, layer)
        d, g = self.head_dim, self.kv_group(head)
        w = f"{p}.qkv_proj.weight"
        k0 = self.num_heads * d
        v0 = k0 + self.num_kv_heads * d
        return HeadSlices(
            head=HeadRef(layer, head),
            kv_group=g,
            q_weight=rows(w, head * d, d),
            k_weight=rows(w, k0 + g * d, d),
            v_weight=rows(w, v0 + g * d, d),
            o_weight=rows(f"{p}.o_proj.weight", head * d, d, dim=1),
            q_bias=None,
            k_bias=None,
            v_bias=None,
        )

    def neuron_axes(self, layer: int) -> NeuronAxes:
        p = f"model.layers.{layer}.mlp"
        return NeuronAxes(up=f"{p}.gate_up_proj.weight", up_dim=0, down=f"{p}.down_proj.weight", down_dim=1)

    def neuron_vectors(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        up, down = super().neuron_vectors(layer)
        inter = down.shape[0]
        return up[inter:], down  # the up half of [gate | up]
