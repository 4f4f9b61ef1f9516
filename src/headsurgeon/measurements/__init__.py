"""Measurements on a model that surgery, evaluation, studies and extremes all need: perplexity
and head ablation. They sit below every one of those packages (and import none of them), so
imports only point down: surgery evaluates with them during training, evaluation and the
report reuse them afterwards."""

from .ablation import AblationResult, ablated_heads, ablation_effects, per_head_effects
from .perplexity import PerplexityResult, perplexity

__all__ = ["AblationResult", "PerplexityResult", "ablated_heads", "ablation_effects", "per_head_effects", "perplexity"]
