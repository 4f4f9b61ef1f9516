"""Adapter registry keyed by ``config.model_type`` (add a family: import it and list it here)."""

from __future__ import annotations

from torch import nn

from headsurgeon.errors import UnsupportedArchitectureError

from .base import FamilyAdapter
from .bloom import BloomAdapter
from .falcon import FalconAdapter
from .gemma import Gemma2Adapter, Gemma3Adapter
from .gpt2 import GPT2Adapter
from .gpt_neox import GPTNeoXAdapter
from .gpt_oss import GptOssAdapter
from .llama import LlamaAdapter
from .mpt import MptAdapter
from .olmo2 import Olmo2Adapter
from .phi3 import Phi3Adapter
from .qwen3 import Qwen3Adapter

ADAPTERS: tuple[type[FamilyAdapter], ...] = (
    BloomAdapter, LlamaAdapter, GPT2Adapter, GPTNeoXAdapter,
    Qwen3Adapter, Gemma2Adapter, Gemma3Adapter, Olmo2Adapter, Phi3Adapter, GptOssAdapter, FalconAdapter, MptAdapter,
)

_BY_TYPE = {t: cls for cls in ADAPTERS for t in cls.model_types}


def supported_model_types() -> list[str]:
    return sorted(_BY_TYPE)


def check_model_type(model_type: str | None) -> type[FamilyAdapter]:
    """The adapter class for ``model_type``; a one-line error naming the supported types otherwise."""
    cls = _BY_TYPE.get(model_type)
    if cls is None:
        raise UnsupportedArchitectureError(
            f"architecture '{model_type}' is not supported; supported model types: "
            f"{', '.join(supported_model_types())} (a new family needs one adapter module in "
            "headsurgeon/models/adapters/)"
        )
    return cls


def adapter_for(model: nn.Module) -> FamilyAdapter:
    """The family adapter for ``model``; a one-line error naming the supported types otherwise."""
    return check_model_type(getattr(getattr(model, "config", None), "model_type", None))(model)
