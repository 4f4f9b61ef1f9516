"""GPT-2: ``c_attn`` is a ``Conv1D`` (weight stored ``[in, out]``, i.e. transposed) with output
columns ``[all q | all k | all v]``; head ``h`` owns columns ``h*d .. (h+1)*d`` inside each third.
``c_proj`` is also a ``Conv1D``: head ``h`` writes through its *rows* ``[h*d, (h+1)*d)``.
"""

from __future__ import annotations

from .base import FamilyAdapter, HeadRef, HeadSlices, NeuronAxes, rows


class GPT2Adapter(FamilyAdapter):
    model_types = ("gpt2",)
    family = "gpt2"
    attention_path = "transformer.h.{layer}.attn"
    output_projection_path = "transformer.h.{layer}.attn.c_proj"
    block_path = "transformer.h.{layer}"
    weight_output_dim = 1  # Conv1D stores [in, out]

    def head_slices(self, layer: int, head: int) -> HeadSlices:
        self.check_head(layer, head)
        p = f"transformer.h.{layer}.attn"
        d, hid = self.head_dim, self.hidden_size
        w, b = f"{p}.c_attn.weight", f"{p}.c_attn.bias"
        return HeadSlices(
            head=HeadRef(layer, head),
            kv_group=head,
            q_weight=rows(w, head * d, d, dim=1),  # Conv1D: output features are columns
            k_weight=rows(w, hid + head * d, d, dim=1),
            v_weight=rows(w, 2 * hid + head * d, d, dim=1),
            o_weight=rows(f"{p}.c_proj.weight", head * d, d, dim=0),  # Conv1D: input features are rows
            q_bias=rows(b, head * d, d),
            k_bias=rows(b, hid + head * d, d),
            v_bias=rows(b, 2 * hid + head * d, d),
        )

    def neuron_axes(self, layer: int) -> NeuronAxes:
        p = f"transformer.h.{layer}.mlp"
        # Conv1D c_fc [hidden, 4h]: neuron i is column i; c_proj [4h, hidden]: row i.
        return NeuronAxes(up=f"{p}.c_fc.weight", up_dim=1, down=f"{p}.c_proj.weight", down_dim=0)
