"""Arm construction: targets by rule, random healthy controls, extended columns, plans."""

import numpy as np
import pytest
from study_helpers import synthetic_diagnosis

from headsurgeon.diagnosis import HEALTHY
from headsurgeon.errors import HeadsurgeonError
from headsurgeon.models.adapters import HeadRef
from headsurgeon.studies import StudySettings, arm_plans, choose_targets, extended_columns, random_healthy


@pytest.fixture
def diag():
    rng = np.random.default_rng(0)
    bos = rng.uniform(0.0, 0.45, size=(6, 8))  # healthy background
    collapsed = [(1, 2, 0.97), (2, 5, 0.81), (3, 1, 0.77), (3, 6, 0.66), (4, 4, 0.91), (5, 0, 0.55), (5, 7, 0.60)]
    for l, h, b in collapsed:
        bos[l, h] = b
    return synthetic_diagnosis(bos, kv_heads=4)


def test_targets_are_the_most_collapsed_heads(diag):
    t = choose_targets(diag, 4)
    assert t == sorted([HeadRef(1, 2), HeadRef(4, 4), HeadRef(2, 5), HeadRef(3, 1)])
    assert choose_targets(diag, 2, layers=(3, 5)) == [HeadRef(3, 1), HeadRef(4, 4)]
    with pytest.raises(HeadsurgeonError, match="fewer than --targets 9"):
        choose_targets(diag, 9)
    top = choose_targets(diag, 9, rule="top")  # any class
    assert len(top) == 9 and set(choose_targets(diag, 7)) <= set(top)


def test_random_healthy_heads_are_healthy_disjoint_seeded_and_as_many(diag):
    targets = choose_targets(diag, 5)
    picks = {seed: random_healthy(diag, targets, seed) for seed in range(6)}
    for seed, heads in picks.items():
        assert len(heads) == len(targets) == len(set(heads))
        assert not set(heads) & set(targets)
        assert all(diag.classes[h.layer, h.head] == HEALTHY for h in heads)
        # same layers as the targets (every layer here has healthy heads left)
        assert sorted(h.layer for h in heads) == sorted(t.layer for t in targets)
        assert random_healthy(diag, targets, seed) == heads  # deterministic per seed
    assert len({tuple(h) for h in picks.values()}) > 1  # and different across seeds
    anywhere = random_healthy(diag, targets, 0, same_layers=False)
    assert len(anywhere) == 5 and all(diag.classes[h.layer, h.head] == HEALTHY for h in anywhere)


def test_random_healthy_falls_back_to_the_nearest_layer_and_refuses_too_few():
    bos = np.full((5, 3), 0.1)
    bos[3, :] = 0.9  # layer 3 has no healthy head: its targets get heads of layers 2 or 4, never 0 or 1
    d = synthetic_diagnosis(bos)
    for seed in range(5):
        heads = random_healthy(d, [HeadRef(3, 0), HeadRef(3, 1)], seed=seed)
        assert all(h.layer in (2, 4) for h in heads)
    bos = np.full((2, 3), 0.1)
    bos[0, :] = 0.9
    d = synthetic_diagnosis(bos)
    with pytest.raises(HeadsurgeonError, match="fewer than the 4 targets"):
        random_healthy(d, [HeadRef(0, 0), HeadRef(0, 1), HeadRef(0, 2), HeadRef(1, 0)], seed=0)


def test_extended_column_and_plans(diag):
    targets = choose_targets(diag, 4)  # layers 1-4
    col = extended_columns(diag, targets, None)[0]
    healthy_in_range = [sum(diag.classes[l, h] == HEALTHY and HeadRef(l, h) not in targets for l in range(1, 5)) for h in range(8)]
    assert healthy_in_range[col] == max(healthy_in_range)
    assert extended_columns(diag, targets, (3,)) == (3,)
    plans = arm_plans(diag, StudySettings(n_targets=4), seed=1)
    assert set(plans) == {"surgery", "no_reinit", "random_healthy", "extended", "lora"}
    assert plans["surgery"].targets == plans["no_reinit"].targets == plans["lora"].targets == targets
    ext = set(plans["extended"].targets)
    assert set(targets) <= ext and ext - set(targets) == {HeadRef(l, col) for l in range(1, 5)} - set(targets)
    assert plans["random_healthy"].targets == random_healthy(diag, targets, 1)
    assert all(p.gqa_mode == "query" for p in plans.values())
