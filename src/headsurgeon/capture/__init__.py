"""Observe a model's attention through hooks on its own modules (never a copied forward)."""

from .attention import AttentionBatch, check_attention_map, stream_attention

__all__ = ["AttentionBatch", "check_attention_map", "stream_attention"]
