"""Qwen3: the Llama layout plus RMS norms on queries and keys, over ``head_dim``.

``q_norm``/``k_norm`` normalise each head's query/key vector on its own (the forward views the
projection as ``(..., heads, head_dim)`` first) with one ``[head_dim]`` weight shared by every head
of the layer. Decision: that weight belongs to no head, so it stays frozen and a head's surgery
leaves it untouched; surgery stays local (each head's normalised query depends only on its own
rows). Optional sliding-window layers come from ``layer_types``.
"""

from __future__ import annotations

from .llama import LlamaAdapter, QKNormMixin


class Qwen3Adapter(QKNormMixin, LlamaAdapter):
    model_types = ("qwen3",)
    family = "qwen3"
    qk_norm_scope = "head_dim"
