"""Lab tests: one tiny lab trained once per session (every encoding, one seed) on the shared
plain-text corpus, with headsurgeon's caches in a temporary folder."""

from __future__ import annotations

import pytest

from torch_threads import one_torch_thread


@pytest.fixture(scope="session")
def lab_corpus(text_corpus):
    """The shared plain-text corpus of ``tests/conftest.py``, under the name the lab tests use."""
    return text_corpus


@pytest.fixture(scope="session")
def lab_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("HEADSURGEON_CACHE", str(tmp_path_factory.mktemp("lab-cache")))
    mp.delenv("HEADSURGEON_CORPUS_CACHE", raising=False)
    yield
    mp.undo()


@pytest.fixture(scope="session")
def tiny_cfg(lab_corpus):
    from headsurgeon.lab import preset

    return preset("tiny", corpus=str(lab_corpus), seeds=(0,))


@pytest.fixture(scope="session")
def tiny_lab(tiny_cfg, lab_cache, tmp_path_factory):
    """``(folder, analysis)`` of the tiny preset, every encoding, seed 0."""
    from headsurgeon.lab import run_lab

    out = tmp_path_factory.mktemp("lab") / "tiny"
    with one_torch_thread():
        analysis = run_lab(tiny_cfg, out, progress=False)
    return out, analysis
