"""Evaluation of models before and after surgery (perplexity; comparison and reports to come)."""

from .perplexity import PerplexityResult, perplexity

__all__ = ["PerplexityResult", "perplexity"]
