"""Fixtures for study tests: the shared text corpus under its study name, one torch thread."""

from __future__ import annotations

import pytest

from torch_threads import one_torch_thread


@pytest.fixture(scope="session")
def study_corpus(text_corpus):
    """The shared text corpus (``tests/conftest.py``) under the name the study tests use."""
    return text_corpus


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    with one_torch_thread():
        yield
