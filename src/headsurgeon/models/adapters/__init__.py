"""Head layouts: one small adapter per model family (see ``base.py``)."""

from .base import FamilyAdapter, HeadRef, HeadSlices, NeuronAxes, ScoreSpec, TensorSlice
from .registry import ADAPTERS, adapter_for, check_model_type, supported_model_types

__all__ = [
    "ADAPTERS",
    "FamilyAdapter",
    "HeadRef",
    "HeadSlices",
    "NeuronAxes",
    "ScoreSpec",
    "TensorSlice",
    "adapter_for",
    "check_model_type",
    "supported_model_types",
]
