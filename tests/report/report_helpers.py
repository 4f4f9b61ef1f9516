"""What the report tests share besides fixtures: the tiny run's plan and its training config.

A module of its own with a name no other test folder uses, so any set of test folders can be
collected together (``from conftest import`` would pick whichever ``conftest`` was imported
first).
"""

from __future__ import annotations

from headsurgeon.models.adapters import HeadRef
from headsurgeon.prompts import builtin_prompts
from headsurgeon.surgery import SurgeryPlan, preset

PLAN = SurgeryPlan(model={}, targets=[HeadRef(0, 1), HeadRef(1, 2)], frozen_in_zone=[HeadRef(1, 3)])


def tiny_config(corpus, **kw):
    return preset("tiny").with_(corpus=str(corpus), max_steps=4, eval_every=2, **kw)


def make_other_corpus(root):
    """A second, different distribution (the prompts' words reversed) for other-distribution perplexity."""
    other = root / "other"
    other.mkdir()
    for i in range(3):
        for p in builtin_prompts():
            (other / f"{p.name}-{i}.txt").write_text(" ".join(reversed(p.text.split())))
    return other
