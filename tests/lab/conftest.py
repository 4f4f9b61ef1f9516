"""Lab tests: one tiny lab trained once per session (every encoding, one seed) on a small
plain-text corpus, with headsurgeon's caches in a temporary folder."""

from __future__ import annotations

import pytest

from torch_threads import one_torch_thread


@pytest.fixture(scope="session")
def lab_corpus(tmp_path_factory):
    from headsurgeon.prompts import builtin_prompts

    root = tmp_path_factory.mktemp("lab-corpus")
    for i in range(6):
        for p in builtin_prompts():
            (root / f"{p.name}-{i}.txt").write_text(p.text)
    return root


@pytest.fixture(scope="session")
def lab_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("HEADSURGEON_CACHE", str(tmp_path_factory.mktemp("lab-cache")))
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
