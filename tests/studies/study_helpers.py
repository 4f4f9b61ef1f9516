"""Helpers shared by the study tests: tiny models with short diagnosis prompts, synthetic diagnoses."""

from __future__ import annotations

import numpy as np

from headsurgeon.diagnosis import Diagnosis, Thresholds
from headsurgeon.models import wrap_model
from headsurgeon.models.tiny import tiny_model_and_tokenizer


def tiny_lm(family: str = "llama", **overrides):
    """A fresh tiny model whose position table says 64, so diagnosis prompts are cut to 64 tokens
    (byte-level prompts would otherwise be 512 tokens long, and diagnosis would dominate)."""
    model, tok = tiny_model_and_tokenizer(family, seed=0, **overrides)
    for key in ("max_position_embeddings", "n_positions"):
        if hasattr(model.config, key):
            setattr(model.config, key, 64)
    return wrap_model(model, tok, name=f"tiny-{family}")


def synthetic_diagnosis(bos: np.ndarray, kv_heads: int | None = None) -> Diagnosis:
    """A :class:`Diagnosis` with the given BOS mass per head (entropy high: no low-entropy heads)."""
    L, H = bos.shape
    return Diagnosis(
        model={"name": "synthetic", "family": "llama", "num_layers": L, "num_heads": H, "num_kv_heads": kv_heads or H},
        settings={"thresholds": Thresholds().to_dict()},
        prompts=[],
        per_prompt={"bos_mass": bos[None].astype(float), "entropy": np.full((1, L, H), 2.0), "local_mass": np.zeros((1, L, H))},
    )
