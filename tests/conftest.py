"""Shared fixtures: tiny random models of every supported family, built offline in milliseconds.

Each test gets a *fresh* model (tests perturb weights in place), wrapped the way the library
wraps models (eager attention, adapter attached). ``FAMILY_CASES`` lists the configurations
every per-family test runs on: one per family plus the layouts that break naive code (grouped-
query attention with 3 query heads per KV head, and BLOOM with a non-power-of-two head count,
whose ALiBi slopes are interleaved).
"""

from __future__ import annotations

import os

import pytest
import torch

# Never let a test wait on the network: the hub is unreachable here and must stay so in CI.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(1)  # tiny models: threads only add overhead on a shared 2-core machine

#: id -> (family, config overrides)
FAMILY_CASES: dict[str, tuple[str, dict]] = {
    "bloom": ("bloom", {}),
    "bloom-6heads": ("bloom", {"heads": 6, "hidden": 48}),  # ALiBi with interleaved extra slopes
    "llama-gqa": ("llama", {"heads": 4, "kv_heads": 2}),  # with q/k/v/o biases
    "mistral-gqa3": ("mistral", {"heads": 6, "kv_heads": 2, "hidden": 48}),  # 3 query heads per KV head
    "qwen2-gqa": ("qwen2", {"heads": 4, "kv_heads": 2}),  # q/k/v biases, no o bias
    "gpt2": ("gpt2", {}),
    "gpt_neox": ("gpt_neox", {}),
}


def make_tiny(case: str, seed: int = 0, **overrides):
    """A fresh :class:`LoadedModel` for ``case`` (a key of ``FAMILY_CASES``)."""
    from headsurgeon.models import wrap_model
    from headsurgeon.models.tiny import tiny_model_and_tokenizer

    family, kw = FAMILY_CASES[case]
    model, tok = tiny_model_and_tokenizer(family, seed=seed, **{**kw, **overrides})
    return wrap_model(model, tok, name=f"tiny-{case}")


@pytest.fixture(params=list(FAMILY_CASES), ids=list(FAMILY_CASES))
def tiny(request):
    """A fresh tiny LoadedModel, once per entry of ``FAMILY_CASES``."""
    loaded = make_tiny(request.param)
    loaded.case = request.param
    return loaded


@pytest.fixture
def tiny_factory():
    return make_tiny


@pytest.fixture
def tiny_llama():
    return make_tiny("llama-gqa")


@pytest.fixture
def tiny_bloom():
    return make_tiny("bloom")


@pytest.fixture(scope="session")
def saved_tiny(tmp_path_factory):
    """``save_pretrained`` folders (model + tokenizer) of tiny models, written once per session."""
    cache: dict[str, object] = {}

    def get(case: str):
        if case not in cache:
            loaded = make_tiny(case)
            folder = tmp_path_factory.mktemp(f"saved-{case}")
            loaded.model.save_pretrained(folder)
            loaded.tokenizer.save_pretrained(folder)
            cache[case] = folder
        return cache[case]

    return get
