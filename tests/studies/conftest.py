"""Fixtures for study tests: a small text corpus and a tiny model factory."""

from __future__ import annotations

import pytest
from study_helpers import tiny_lm
from torch_threads import one_torch_thread


@pytest.fixture(scope="session")
def study_corpus(text_corpus):
    """The shared text corpus (``tests/conftest.py``) under the name the study tests use."""
    return text_corpus


@pytest.fixture
def tiny_factory():
    return tiny_lm


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    with one_torch_thread():
        yield
