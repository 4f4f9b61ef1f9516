"""Lab tests: one tiny lab trained once per session (every encoding, one seed) on the shared
plain-text corpus, with headsurgeon's caches in a temporary folder."""

from __future__ import annotations

import contextlib

import pytest

from torch_threads import one_torch_thread


@pytest.fixture(scope="session")
def lab_corpus(text_corpus):
    """The shared plain-text corpus of ``tests/conftest.py``, under the name the lab tests use."""
    return text_corpus


@pytest.fixture(scope="session")
def lab_cache_dir(tmp_path_factory):
    """The lab tests' headsurgeon cache: one temporary folder for the whole session."""
    return tmp_path_factory.mktemp("lab-cache")


@contextlib.contextmanager
def _lab_caches(folder):
    """headsurgeon's caches in ``folder`` while inside, the caller's variables restored after."""
    mp = pytest.MonkeyPatch()
    mp.setenv("HEADSURGEON_CACHE", str(folder))
    mp.delenv("HEADSURGEON_CORPUS_CACHE", raising=False)
    try:
        yield
    finally:
        mp.undo()


@pytest.fixture(autouse=True)
def lab_cache(lab_cache_dir):
    """Every lab test runs with the lab cache, and only it: a session-wide setting stayed on for
    every test collected after this folder."""
    with _lab_caches(lab_cache_dir):
        yield


@pytest.fixture(scope="session")
def tiny_cfg(lab_corpus):
    from headsurgeon.lab import preset

    return preset("tiny", corpus=str(lab_corpus), seeds=(0,))


@pytest.fixture(scope="session")
def tiny_lab(tiny_cfg, lab_cache_dir, tmp_path_factory):
    """``(folder, analysis)`` of the tiny preset, every encoding, seed 0."""
    from headsurgeon.lab import run_lab

    out = tmp_path_factory.mktemp("lab") / "tiny"
    with one_torch_thread(), _lab_caches(lab_cache_dir):
        analysis = run_lab(tiny_cfg, out, progress=False)
    return out, analysis
