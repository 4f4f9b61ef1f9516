"""MPT: a fused ``Wqkv`` laid out ``[all Q | all K | all V]`` and ALiBi positions.

The forward chunks ``Wqkv``'s output in three and views each third as ``(heads, head_dim)``, so
head h owns rows ``h*d``, ``hidden + h*d`` and ``2*hidden + h*d`` (``d`` rows each); ``out_proj``
takes head h through its columns. MPT has no biases by default and no KV groups. The ALiBi bias
comes from transformers' ``build_mpt_alibi_tensor`` (its slopes for head counts that are not a
power of two are interleaved differently from BLOOM's) and is added to the scaled scores once.
MPT computes its probabilities explicitly (no attention interface, no SDPA) and trains on that
same path. The measurement engine reaches its scores through the fused projection (the
``"projection"`` route, like BLOOM): a hook on ``Wqkv`` splits its output (clamped at
``clip_qkv`` first when the config sets it, as the forward does), and :meth:`score_spec` gives
the scale (``softmax_scale``) and the slopes. The ALiBi table is built for ``max_seq_len``
positions: longer prompts are cut there.
"""

from __future__ import annotations

import torch

from .base import FamilyAdapter, HeadRef, HeadSlices, NeuronAxes, ScoreSpec, rows


class MptAdapter(FamilyAdapter):
    model_types = ("mpt",)
    family = "mpt"
    attention_path = "transformer.blocks.{layer}.attn"
    output_projection_path = "transformer.blocks.{layer}.attn.out_proj"
    block_path = "transformer.blocks.{layer}"
    attention_route = "projection"
    qkv_projection_path = "transformer.blocks.{layer}.attn.Wqkv"
    sdpa_for_training = False
    qkv_layout = "fused Wqkv [all Q | all K | all V]"
    boolean_mask_marks_masked = True  # the model casts its causal mask to bool and masked_fills True

    def head_slices(self, layer: int, head: int) -> HeadSlices:
        self.check_head(layer, head)
        p = self.path(self.attention_path, layer)
        d, hid = self.head_dim, self.hidden_size
        w, b = f"{p}.Wqkv.weight", f"{p}.Wqkv.bias"
        has_bias = self.has_param(b)
        return HeadSlices(
            head=HeadRef(layer, head),
            kv_group=head,
            q_weight=rows(w, head * d, d),
            k_weight=rows(w, hid + head * d, d),
            v_weight=rows(w, 2 * hid + head * d, d),
            o_weight=rows(f"{p}.out_proj.weight", head * d, d, dim=1),
            q_bias=rows(b, head * d, d) if has_bias else None,
            k_bias=rows(b, hid + head * d, d) if has_bias else None,
            v_bias=rows(b, 2 * hid + head * d, d) if has_bias else None,
        )

    def queries_keys(self, layer: int, projection_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        clip = self.config.attn_config.clip_qkv
        x = projection_output.clamp(min=-clip, max=clip) if clip else projection_output
        B, T, _ = x.shape
        q, k, _ = x.chunk(3, dim=2)  # [all Q | all K | all V]
        return (q.reshape(B, T, self.num_heads, self.head_dim).transpose(1, 2),
                k.reshape(B, T, self.num_heads, self.head_dim).transpose(1, 2))

    def score_spec(self, layer: int) -> ScoreSpec:
        # scores = softmax_scale * q.k + slope_h * (j - (T-1)): a row constant away from slope_h * j
        if not hasattr(self, "_slopes"):
            self._slopes = self.alibi_slopes()
        return ScoreSpec(scale=float(self.attention_module(layer).softmax_scale), alibi_slopes=self._slopes)

    def neuron_axes(self, layer: int) -> NeuronAxes:
        p = f"transformer.blocks.{layer}.ffn"
        return NeuronAxes(up=f"{p}.up_proj.weight", up_dim=0, down=f"{p}.down_proj.weight", down_dim=1)

    @property
    def max_positions(self) -> int | None:
        return int(self.config.max_seq_len)

    def alibi_slopes(self) -> torch.Tensor:
        # The model's own builder, called as its forward calls it (with the default bias maximum,
        # whatever attn_config says): [heads, 1, T] biases slope * (j - (T-1)); two keys give the slope.
        alibi = self.model.get_submodule("transformer").build_mpt_alibi_tensor(self.num_heads, 2)
        return (alibi[:, 0, 1] - alibi[:, 0, 0]).float().clone()
