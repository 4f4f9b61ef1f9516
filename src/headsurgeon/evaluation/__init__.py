"""Evaluation of models before and after surgery: perplexity, head ablation, comparisons and
drift, generations, MLP dormancy, figures (the HTML report lives in :mod:`headsurgeon.report`)."""

from headsurgeon.measurements import AblationResult, PerplexityResult, ablated_heads, ablation_effects, per_head_effects, perplexity

from .compare import Comparison, compare
from .generation import DEFAULT_GENERATION_PROMPTS, Generations, GenerationSettings, generate_side_by_side
from .head_ablation import ablation_before_after, ablation_groups
from .inputs import Point, RunRecord, load_run, resolve_points
from .mlp_dormancy import compare_dormancy, mlp_dormancy
from .outputs import write_comparison
from .trajectory import perplexity_trajectory

__all__ = [
    "DEFAULT_GENERATION_PROMPTS", "AblationResult", "Comparison", "GenerationSettings", "Generations", "PerplexityResult",
    "Point", "RunRecord", "ablated_heads", "ablation_before_after", "ablation_effects", "ablation_groups", "compare",
    "compare_dormancy", "generate_side_by_side", "load_run", "mlp_dormancy", "per_head_effects", "perplexity",
    "perplexity_trajectory", "resolve_points", "write_comparison",
]
