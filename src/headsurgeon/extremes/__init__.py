"""Extreme-token phenomena (attention sinks, value-state drains, residual-state peaks) and
active-dormant heads, with interventions (Guo et al. 2024; ``SCIENCE.md`` part B).

Entry point: :func:`run_extremes` -> :class:`ExtremesResult` (versioned JSON, ``kind: "extremes"``).
"""

from .dormancy import ALWAYS_ACTIVE, ALWAYS_DORMANT, BORDERLINE, DOMAIN_DEPENDENT, DORMANCY_CLASSES, classify_dormancy
from .interventions import mask_out_keys, remove_sink_attention, zero_heads
from .result import ExtremesResult
from .run import run_extremes
from .settings import PARTS, ExtremesSettings

__all__ = [
    "ALWAYS_ACTIVE", "ALWAYS_DORMANT", "BORDERLINE", "DOMAIN_DEPENDENT", "DORMANCY_CLASSES", "PARTS",
    "ExtremesResult", "ExtremesSettings", "classify_dormancy", "mask_out_keys", "remove_sink_attention",
    "run_extremes", "zero_heads",
]
