"""Fixtures for study tests: a small text corpus and a tiny model factory."""

from __future__ import annotations

import pytest
from study_helpers import tiny_lm

from headsurgeon.prompts import builtin_prompts


@pytest.fixture(scope="session")
def study_corpus(tmp_path_factory):
    """A folder of plain-text documents (built-in prompt texts, several copies)."""
    root = tmp_path_factory.mktemp("study-corpus")
    for i in range(6):
        for p in builtin_prompts():
            (root / f"{p.name}-{i}.txt").write_text(p.text)
    return root


@pytest.fixture
def tiny_factory():
    return tiny_lm


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny models run on one thread: on a shared 2-core machine a second OpenMP thread only
    spins (measured: 50x the CPU time of a tiny-model diagnosis under load)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
