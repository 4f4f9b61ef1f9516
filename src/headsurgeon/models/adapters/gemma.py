"""Gemma 2 and Gemma 3: the Llama layout with alternating local (sliding-window) and global layers.

* Gemma 2 soft-caps the attention scores, ``cap * tanh(scores / cap)`` (``attn_logit_softcapping``,
  50 in the released models), before the softmax. The eager weights are the softmax of the capped
  scores, so every statistic is of the capped scores exactly; :meth:`attention_softcap` declares
  the cap for capture paths that compute the scores themselves. transformers refuses SDPA for
  Gemma 2 (SDPA has no soft-cap), so its training steps stay eager.
* Gemma 3 has no soft-cap but q/k RMS norms over ``head_dim`` (weight shared by the layer's heads:
  frozen, surgery local), and five local layers for each global one.

Both scale queries by ``query_pre_attn_scalar ** -0.5`` and may have ``heads * head_dim`` different
from ``hidden_size``; the slices use ``head_dim`` throughout.
"""

from __future__ import annotations

from .llama import LlamaAdapter, QKNormMixin


class Gemma2Adapter(LlamaAdapter):
    model_types = ("gemma2",)
    family = "gemma2"
    sdpa_for_training = False  # transformers: "sdpa does not support softcapping"

    def attention_softcap(self) -> float | None:
        cap = getattr(self.config, "attn_logit_softcapping", None)
        return float(cap) if cap else None


class Gemma3Adapter(QKNormMixin, LlamaAdapter):
    model_types = ("gemma3_text",)
    family = "gemma3"
    qk_norm_scope = "head_dim"

    def attention_softcap(self) -> float | None:
        cap = getattr(self.config, "attn_logit_softcapping", None)
        return float(cap) if cap else None
