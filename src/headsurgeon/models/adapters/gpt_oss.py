"""gpt-oss: the Llama layout with q/k/v/o biases, alternating sliding/global layers, a mixture-of-
experts MLP, and a learned sink logit per head.

Each head's softmax runs over its real keys *and* one extra logit, ``self_attn.sinks[h]``, that
stands for "attend nowhere": the mass it takes is not spread over any value. In transformers
5.24 the eager path drops that column from the weights it returns without renormalising (rows
sum to 1 minus the sink's share), and refuses SDPA. Decisions:

* measurement: the engine (:mod:`headsurgeon.capture.engine`) receives the sink logits with
  each attention call (``s_aux``) and runs every row's softmax over the real keys and the sink,
  exactly as the family does (its output too: SDPA has no sinks, so the engine computes the
  family's eager arithmetic for gpt-oss, inside a measurement or not);
* reference: :meth:`reference_attention` selects ``headsurgeon_eager_sinks``, an attention
  function registered with transformers that computes what the family's eager function computes
  (same operations, same output) and returns the weights *with* the sink column last, so every
  row is a full probability distribution and the eager capture's check stays "rows sum to 1";
* statistics: BOS and local mass are the weights the model gives to real keys; the sink's share
  is reported as ``sink_mass`` beside BOS mass, with each head's sink logit; entropy is that of
  the full distribution, the sink counted as one more outcome;
* surgery: the sink logits are frozen (:meth:`shared_parameters`). A head's surgery re-initialises
  its Q/K/V rows *and their biases* and zeroes its output columns; the sink keeps its trained
  value, so a revived head that learns to idle shows it as sink mass, not as BOS mass.

MLP dormancy counts every expert's neurons: neuron i of expert e reads through
``gate_up_proj[e, :, 2i + 1]`` (the up half; gate and up are interleaved) and writes through
``down_proj[e, i, :]``.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from .llama import LlamaAdapter

ATTN_IMPLEMENTATION = "headsurgeon_eager_sinks"


def eager_with_sink_column(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """gpt-oss eager attention returning ``[batch, heads, T, keys + 1]`` weights (sink last).

    The arithmetic is the family's own (``modeling_gpt_oss.eager_attention_forward``): logits,
    mask, the sink column appended, the row maximum subtracted, one softmax; only the returned
    weights keep the sink column. Why a copy of those few lines rather than a hook: the library
    function slices the sink column off right after its softmax, inside one call, so no hook can
    see it; and computing the share as ``1 - sum(weights)`` afterwards would make the capture's
    "rows sum to 1" check true by construction. ``tests/test_family_specifics.py`` checks the
    copy against the library bit for bit (logits and real-key weights).
    """
    from transformers.models.gpt_oss.modeling_gpt_oss import repeat_kv

    key_states = repeat_kv(key, module.num_key_value_groups)
    value_states = repeat_kv(value, module.num_key_value_groups)
    logits = torch.matmul(query, key_states.transpose(2, 3)) * scaling
    if attention_mask is not None:
        logits = logits + attention_mask
    sinks = module.sinks.reshape(1, -1, 1, 1).expand(query.shape[0], -1, query.shape[-2], -1)
    combined = torch.cat([logits, sinks], dim=-1)
    combined = combined - combined.max(dim=-1, keepdim=True).values
    probs = torch.softmax(combined, dim=-1, dtype=combined.dtype)
    weights = nn.functional.dropout(probs[..., :-1], p=dropout, training=module.training).to(value_states.dtype)
    out = torch.matmul(weights, value_states).transpose(1, 2).contiguous()
    return out, probs


def register_attention() -> None:
    """Make ``headsurgeon_eager_sinks`` known to transformers (attention and mask interfaces)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface, eager_mask

    if ATTN_IMPLEMENTATION not in AttentionInterface._global_mapping:
        AttentionInterface.register(ATTN_IMPLEMENTATION, eager_with_sink_column)
    if ATTN_IMPLEMENTATION not in ALL_MASK_ATTENTION_FUNCTIONS._global_mapping:
        AttentionMaskInterface.register(ATTN_IMPLEMENTATION, eager_mask)


class GptOssAdapter(LlamaAdapter):
    model_types = ("gpt_oss",)
    family = "gpt_oss"
    sdpa_for_training = False  # transformers refuses SDPA for gpt-oss (no sink support)
    #: The capture path's weights carry one extra, last column: the sink's share of each row.
    sink_column = True

    def sink_parameter(self, layer: int) -> str | None:
        return f"{self.path(self.attention_path, layer)}.sinks"

    def shared_parameters(self, layer: int) -> list[str]:
        return [self.sink_parameter(layer)]

    @contextmanager
    def reference_attention(self):
        """The family's eager arithmetic with the sink's column kept (see the module docstring)."""
        register_attention()
        before = getattr(self.config, "_attn_implementation", None)
        self.set_attention(ATTN_IMPLEMENTATION)
        try:
            yield
        finally:
            self.set_attention(before)

    def neuron_vectors(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        experts = self.model.get_submodule(f"model.layers.{layer}.mlp.experts")
        gate_up = experts.gate_up_proj.detach().float()  # [E, hidden, 2 * inter], gate/up interleaved
        up = gate_up[..., 1::2].transpose(1, 2)  # [E, inter, hidden]
        down = experts.down_proj.detach().float()  # [E, inter, hidden]
        return up.reshape(-1, up.shape[-1]), down.reshape(-1, down.shape[-1])
