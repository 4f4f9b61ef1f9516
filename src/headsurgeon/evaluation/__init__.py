"""Evaluation of models before and after surgery: perplexity, head ablation, comparisons, reports."""

from .ablation import AblationResult, ablated_heads, ablation_effects, per_head_effects
from .perplexity import PerplexityResult, perplexity

__all__ = ["AblationResult", "PerplexityResult", "ablated_heads", "ablation_effects", "per_head_effects", "perplexity"]
