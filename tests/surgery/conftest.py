"""Shared fixtures for surgery tests: a small text corpus and tiny models with plans."""

from __future__ import annotations

import pytest

from headsurgeon.prompts import builtin_prompts


@pytest.fixture(scope="session")
def text_corpus(tmp_path_factory):
    """A folder of plain-text documents (built-in prompt texts, several copies), ~60k bytes."""
    root = tmp_path_factory.mktemp("corpus")
    for i in range(6):
        for p in builtin_prompts():
            (root / f"{p.name}-{i}.txt").write_text(p.text)
    return root
