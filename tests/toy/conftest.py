"""Shared fixtures of the toy-lab tests: one task built from the offline text, reused."""

from __future__ import annotations

import pytest

from headsurgeon.toy.task import build_task


@pytest.fixture(scope="session")
def bb_task():
    return build_task()
