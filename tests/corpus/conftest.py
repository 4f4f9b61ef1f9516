"""Shared fixtures for the corpus tests: a byte tokenizer, a private cache, small text folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from headsurgeon.models.tiny import byte_tokenizer


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Never touch the user's cache: corpora built without cache_dir land in a temp folder."""
    monkeypatch.setenv("HEADSURGEON_CACHE", str(tmp_path_factory.mktemp("hs-cache")))
    monkeypatch.delenv("HEADSURGEON_CORPUS_CACHE", raising=False)  # the suite's shared one: these tests keep theirs private


@pytest.fixture(scope="session")
def tok():
    return byte_tokenizer()


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache"
