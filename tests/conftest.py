"""Shared fixtures: tiny random models of every supported family, built offline in milliseconds.

Each test gets a *fresh* model (tests perturb weights in place), wrapped the way the library
wraps models (eager attention, adapter attached). ``FAMILY_CASES`` lists the configurations
every per-family test runs on: one per family plus the layouts that break naive code (grouped-
query attention with 3 query heads per KV head, and BLOOM with a non-power-of-two head count,
whose ALiBi slopes are interleaved).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from torch_threads import one_torch_thread

# This conftest also applies to the sub-folders' tests: keep global side effects harmless.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Corpora the tests tokenise are cached in the test run's own folder (kept between runs, ignored
# by git), never in the user's headsurgeon cache; subprocess CLI tests inherit the variable.
os.environ.setdefault("HEADSURGEON_CORPUS_CACHE", str(Path(__file__).resolve().parent.parent / ".pytest_cache" / "corpora"))

# A shell starts background jobs (`pytest ... &`, nohup, some CI runners) with SIGINT ignored, and
# Python then installs no KeyboardInterrupt handler: every Ctrl-C test (kill points sending SIGINT,
# forked children inherit the setting) would fail for how pytest was launched, not for the code.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread_for_tiny_models(request):
    """Only the modules next to this file are affected; sub-folders keep their own settings."""
    if Path(str(request.module.__file__)).parent != Path(__file__).parent:
        yield
        return
    with one_torch_thread():
        yield


@pytest.fixture(autouse=True)
def _native_bf16_products_after_each_test():
    """A test that loads a bf16 model on a CPU without native bf16 turns on the process-wide
    widening of bf16 products (:mod:`headsurgeon.models.cpu_bf16`); the next test starts without it."""
    yield
    import sys

    if (module := sys.modules.get("headsurgeon.models.cpu_bf16")) is not None:
        module.disable()


@pytest.fixture(scope="session")
def text_corpus(tmp_path_factory):
    """A folder of plain-text documents (built-in prompt texts, several copies), ~60k bytes."""
    from headsurgeon.prompts import builtin_prompts

    root = tmp_path_factory.mktemp("corpus")
    for i in range(6):
        for p in builtin_prompts():
            (root / f"{p.name}-{i}.txt").write_text(p.text)
    return root


@pytest.fixture(scope="session")
def three_prompts():
    """One built-in prompt each of prose, code and multilingual text (the real-model tests' set)."""
    from headsurgeon.prompts import builtin_prompts

    by_domain = {p.domain: p for p in reversed(builtin_prompts())}
    return [by_domain["prose"], by_domain["code"], by_domain["multilingual"]]


#: id -> (family, config overrides)
FAMILY_CASES: dict[str, tuple[str, dict]] = {
    "bloom": ("bloom", {}),
    "bloom-6heads": ("bloom", {"heads": 6, "hidden": 48}),  # ALiBi with interleaved extra slopes
    "llama-gqa": ("llama", {"heads": 4, "kv_heads": 2}),  # with q/k/v/o biases
    "mistral-gqa3": ("mistral", {"heads": 6, "kv_heads": 2, "hidden": 48}),  # 3 query heads per KV head
    "qwen2-gqa": ("qwen2", {"heads": 4, "kv_heads": 2}),  # q/k/v biases, no o bias
    "gpt2": ("gpt2", {}),
    "gpt_neox": ("gpt_neox", {}),
    "mistral-window": ("mistral", {"sliding_window": 8}),  # every layer windowed, prompts longer than it
    "qwen3-gqa": ("qwen3", {}),  # q/k norms over head_dim (shared, frozen)
    "gemma2": ("gemma2", {}),  # soft-capped scores, local/global layers, no SDPA
    "gemma3": ("gemma3", {}),  # q/k norms, local/global layers
    "olmo2": ("olmo2", {}),  # q/k norms over all heads: surgery not local
    "phi3-gqa": ("phi3", {}),  # fused qkv_proj [all Q | all K | all V]
    "gpt_oss": ("gpt_oss", {}),  # learned sinks, q/k/v/o biases, local/global layers, MoE MLP
    "falcon-groups": ("falcon", {}),  # new decoder architecture: per KV group [q..q k v]
    "falcon-mq": ("falcon", {"multi_query": True, "new_decoder_architecture": False}),  # [all Q | K | V]
    "falcon-alibi": ("falcon", {"alibi": True, "bias": True}),  # interleaved per head, ALiBi
    "mpt": ("mpt", {}),  # fused Wqkv [all Q | all K | all V], ALiBi
    "mpt-6heads": ("mpt", {"heads": 6, "hidden": 48}),  # MPT's own slope interleaving
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
    """A fresh tiny LoadedModel, once per entry of ``FAMILY_CASES`` (``.case``, ``.family``,
    ``.overrides`` say which)."""
    loaded = make_tiny(request.param)
    loaded.case = request.param
    loaded.family, loaded.overrides = FAMILY_CASES[request.param]
    return loaded


@pytest.fixture(scope="session")
def tiny_factory():
    """``make_tiny(case, seed=0, **overrides)``: test modules get it here rather than by
    ``from conftest import``, which is ambiguous once sub-folders have their own conftest."""
    return make_tiny


def save_opt(folder):
    """A tiny OPT model (an architecture headsurgeon does not support) saved with a tokenizer."""
    from transformers import OPTConfig, OPTForCausalLM

    from headsurgeon.models.tiny import byte_tokenizer

    cfg = OPTConfig(vocab_size=259, hidden_size=16, num_hidden_layers=1, ffn_dim=32, num_attention_heads=2,
                    word_embed_proj_dim=16, max_position_embeddings=32)
    OPTForCausalLM(cfg).save_pretrained(folder)
    byte_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def opt_saver():
    return save_opt


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
