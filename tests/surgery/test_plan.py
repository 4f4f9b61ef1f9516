import json

import numpy as np
import pytest

from headsurgeon.diagnosis import Diagnosis
from headsurgeon.errors import HeadsurgeonError
from headsurgeon.models.adapters import HeadRef
from headsurgeon.surgery import SurgeryPlan, make_plan, parse_head, parse_range


def fake_diagnosis(bos: np.ndarray, kv_heads: int | None = None) -> Diagnosis:
    L, H = bos.shape
    return Diagnosis(
        model={"name": "fake", "family": "llama", "num_layers": L, "num_heads": H, "num_kv_heads": kv_heads or H},
        settings={"thresholds": {"sink": 0.5, "dead": 0.95, "low_entropy": 0.5}, "include_first_query": False, "bos": "auto"},
        prompts=[{"name": "p", "domain": "x", "tokens": 10, "first_token": "a"}],
        per_prompt={"bos_mass": bos[None], "entropy": np.full((1, L, H), 2.0), "local_mass": np.zeros((1, L, H))},
    )


@pytest.fixture
def diag():
    bos = np.array([
        [0.1, 0.2, 0.6, 0.97],
        [0.7, 0.1, 0.3, 0.8],
        [0.2, 0.2, 0.9, 0.1],
    ])
    return fake_diagnosis(bos, kv_heads=2)


def test_class_rule_selects_exactly_collapsed(diag):
    plan = make_plan(diag, classes=["bos_sink", "dead"])
    assert plan.targets == [HeadRef(0, 2), HeadRef(0, 3), HeadRef(1, 0), HeadRef(1, 3), HeadRef(2, 2)]
    assert "DEAD" in plan.reasons["L0H3"]


def test_band_rule_freezes_healthy_in_band(diag):
    plan = make_plan(diag, band=(2, 3), layers=(0, 1))
    assert plan.targets == [HeadRef(0, 2), HeadRef(0, 3), HeadRef(1, 3)]
    assert plan.frozen_in_zone == [HeadRef(1, 2)]
    assert set(plan.zone()) == {HeadRef(l, h) for l in (0, 1) for h in (2, 3)}


def test_top_extra_columns_explicit_and_union(diag):
    plan = make_plan(diag, top=2, heads=[HeadRef(2, 0)], extra_columns=[1], layers=(0, 2))
    assert HeadRef(0, 3) in plan.targets and HeadRef(2, 2) in plan.targets  # top 2
    assert HeadRef(2, 0) in plan.targets
    assert {HeadRef(l, 1) for l in range(3)} <= set(plan.targets)
    assert len(plan.targets) == 6


def test_gqa_group_mode_expands_to_whole_group(diag):
    plan = make_plan(diag, heads=[HeadRef(0, 3)], gqa_mode="group")
    assert plan.targets == [HeadRef(0, 2), HeadRef(0, 3)]  # 4 heads / 2 KV heads: group 1 = heads 2, 3
    assert make_plan(diag, heads=[HeadRef(0, 3)]).targets == [HeadRef(0, 3)]


def test_rules_that_select_nothing_or_bad_values_fail(diag):
    with pytest.raises(HeadsurgeonError, match="select no heads"):
        make_plan(diag, classes=["dead"], layers=(1, 2))
    with pytest.raises(HeadsurgeonError, match="unknown class"):
        make_plan(diag, classes=["sick"])
    with pytest.raises(HeadsurgeonError, match="out of range"):
        make_plan(diag, heads=[HeadRef(5, 0)])
    with pytest.raises(HeadsurgeonError):
        parse_range("9-3", "band", 4)
    assert parse_range("1-2", "band", 4) == (1, 2)
    assert parse_head("L12H3") == parse_head("12:3") == HeadRef(12, 3)


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_plan_file_round_trip(diag, tmp_path, suffix):
    plan = make_plan(diag, band=(2, 3), layers=(0, 1))
    back = SurgeryPlan.load(plan.save(tmp_path / f"plan{suffix}"))
    assert back.targets == plan.targets and back.frozen_in_zone == plan.frozen_in_zone
    assert back.rules == plan.rules and back.gqa_mode == plan.gqa_mode


def test_plan_checks_against_model(diag, tmp_path):
    plan = make_plan(diag, classes=["dead"])
    plan.check_against(3, 4)
    with pytest.raises(HeadsurgeonError, match="made for a model"):
        plan.check_against(30, 9)
    doc = plan.to_dict()
    doc["model"] = {}
    doc["targets"] = {"7": [0]}
    (tmp_path / "p.json").write_text(json.dumps(doc))
    with pytest.raises(HeadsurgeonError, match="out of range"):
        SurgeryPlan.load(tmp_path / "p.json").check_against(3, 4)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(HeadsurgeonError, match="does not parse"):
        SurgeryPlan.load(tmp_path / "bad.json")
