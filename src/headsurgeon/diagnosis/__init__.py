"""Diagnosis: per-head BOS mass, entropy and local mass, classes, figures and JSON."""

from .classes import BOS_SINK, CLASSES, COLLAPSED, DEAD, HEALTHY, LABELS, LOW_ENTROPY, Thresholds, classify
from .collect import collect_head_stats
from .result import Diagnosis
from .run import diagnose, diagnose_encoded

__all__ = [
    "BOS_SINK", "CLASSES", "COLLAPSED", "DEAD", "HEALTHY", "LABELS", "LOW_ENTROPY",
    "Diagnosis", "Thresholds", "classify", "collect_head_stats", "diagnose", "diagnose_encoded",
]
