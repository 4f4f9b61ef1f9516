"""BLOOM: ALiBi positions and a fused ``query_key_value`` interleaved per head.

``query_key_value.weight`` has ``3 * hidden`` rows laid out ``[q0 k0 v0 q1 k1 v1 ...]``, each block
``head_dim`` rows (the forward views the output as ``(heads, 3, head_dim)``). ``dense`` is an
``nn.Linear``; head ``h`` writes through its columns ``[h*d, (h+1)*d)``. BLOOM always computes
attention probabilities explicitly, so no eager switch is needed.
"""

from __future__ import annotations

import torch

from .base import FamilyAdapter, HeadRef, HeadSlices, NeuronAxes, ScoreSpec, rows


class BloomAdapter(FamilyAdapter):
    model_types = ("bloom",)
    family = "bloom"
    attention_path = "transformer.h.{layer}.self_attention"
    output_projection_path = "transformer.h.{layer}.self_attention.dense"
    block_path = "transformer.h.{layer}"
    block_returns_tuple = True  # BloomBlock returns (hidden, attn_weights); the model takes [0]
    sdpa_for_training = False  # BLOOM's attention is not pluggable in transformers: it stays eager
    attention_route = "projection"
    qkv_projection_path = "transformer.h.{layer}.self_attention.query_key_value"

    def queries_keys(self, layer: int, projection_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, T, _ = projection_output.shape
        fused = projection_output.view(B, T, self.num_heads, 3, self.head_dim)  # interleaved per head: [q_h k_h v_h]
        return fused[..., 0, :].transpose(1, 2), fused[..., 1, :].transpose(1, 2)

    def score_spec(self, layer: int) -> ScoreSpec:
        # scores = alibi + q.k / sqrt(d), alibi = slope_h * key position (build_alibi_tensor)
        return ScoreSpec(scale=self.head_dim**-0.5, alibi_slopes=self._slopes())

    def _slopes(self) -> torch.Tensor:
        if not hasattr(self, "_alibi"):
            self._alibi = self.alibi_slopes()
        return self._alibi

    def head_slices(self, layer: int, head: int) -> HeadSlices:
        self.check_head(layer, head)
        p = f"transformer.h.{layer}.self_attention"
        d = self.head_dim
        base = head * 3 * d  # interleaved per head: [q_h k_h v_h] blocks of 3*d rows
        w, b = f"{p}.query_key_value.weight", f"{p}.query_key_value.bias"
        return HeadSlices(
            head=HeadRef(layer, head),
            kv_group=head,
            q_weight=rows(w, base, d),
            k_weight=rows(w, base + d, d),
            v_weight=rows(w, base + 2 * d, d),
            o_weight=rows(f"{p}.dense.weight", head * d, d, dim=1),
            q_bias=rows(b, base, d),
            k_bias=rows(b, base + d, d),
            v_bias=rows(b, base + 2 * d, d),
        )

    def neuron_axes(self, layer: int) -> NeuronAxes:
        p = f"transformer.h.{layer}.mlp"
        return NeuronAxes(up=f"{p}.dense_h_to_4h.weight", up_dim=0, down=f"{p}.dense_4h_to_h.weight", down_dim=1)

    def alibi_slopes(self) -> torch.Tensor:
        # Use the library's own builder (it interleaves extra slopes when heads is not a power
        # of two): one query over two keys at distances 0 and 1 gives exactly slope * 1.
        from transformers.models.bloom.modeling_bloom import build_alibi_tensor

        mask = torch.ones(1, 2)
        alibi = build_alibi_tensor(mask, self.num_heads, torch.float32)  # [heads, 1, 2]
        return (alibi[:, 0, 1] - alibi[:, 0, 0]).clone()
