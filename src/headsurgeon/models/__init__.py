"""Model loading, the converted-model cache, family adapters and tiny test models."""

from .adapters import FamilyAdapter, HeadRef, HeadSlices, TensorSlice, adapter_for, supported_model_types
from .loading import DEFAULT_MODEL_NAME, LoadedModel, load_model, wrap_model

__all__ = [
    "DEFAULT_MODEL_NAME",
    "FamilyAdapter",
    "HeadRef",
    "HeadSlices",
    "LoadedModel",
    "TensorSlice",
    "adapter_for",
    "load_model",
    "supported_model_types",
    "wrap_model",
]
