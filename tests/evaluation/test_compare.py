"""Drift arithmetic on hand-made diagnoses whose every number is known (see eval_helpers.py)."""

import numpy as np
import pytest
from eval_helpers import AFTER, BEFORE, MID, PLAN, diag, fake_run

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.evaluation import Comparison, compare

S = 1 / 64


def test_zone_table_numbers():
    c = compare([diag(BEFORE), diag(AFTER)], zone=PLAN)
    np.testing.assert_array_equal(c.delta(), (np.array(AFTER) - np.array(BEFORE)) * S)
    z = c.zones()
    assert z["targets"] == {"heads": 2, "drifting": 2, "drifting_fraction": 1.0, "mean_abs_delta": 46 * S, "mean_delta": -46 * S,
                            "max_abs_delta": 46 * S,
                            "drifting_heads": [{"head": "L1H0", "delta": -0.71875}, {"head": "L2H0", "delta": -0.71875}]}
    assert z["frozen_in_zone"]["heads"] == 2 and z["frozen_in_zone"]["drifting"] == 1
    assert z["frozen_in_zone"]["mean_abs_delta"] == 4 * S  # (6 + 2) / 2, over all heads of the zone
    assert z["frozen_in_zone"]["mean_delta"] == 2 * S
    assert z["frozen_in_zone"]["drifting_heads"] == [{"head": "L1H1", "delta": 6 * S}]
    out = z["outside_zone"]
    assert (out["heads"], out["drifting"]) == (8, 3)
    assert out["mean_abs_delta"] == 25 / 8 * S and out["mean_delta"] == -3 / 8 * S and out["max_abs_delta"] == 14 * S
    # largest |delta| first; the two 4/64 ties stay in layer order; L0H3 (3/64 = 0.047) does not drift
    assert [h["head"] for h in out["drifting_heads"]] == ["L1H2", "L0H1", "L2H2"]


def test_threshold_is_strict():
    c = compare([diag(BEFORE), diag(AFTER)], zone=PLAN, drift_threshold=4 * S)  # exactly 0.0625
    z = c.zones()
    assert [h["head"] for h in z["outside_zone"]["drifting_heads"]] == ["L1H2"]  # the 4/64 heads sit on the line
    assert z["frozen_in_zone"]["drifting"] == 1
    assert compare([diag(BEFORE), diag(AFTER)], zone=PLAN, drift_threshold=0.2).zones()["outside_zone"]["drifting"] == 1


def test_recoveries_and_iatrogenic_collapses():
    rec, iat = compare([diag(BEFORE), diag(AFTER)], zone=PLAN).transitions()
    assert [(r["head"], r["zone"], r["before"], r["after"]) for r in rec] == [
        ("L1H0", "targets", "bos_sink", "healthy"),
        ("L1H2", "outside_zone", "bos_sink", "healthy"),
        ("L2H0", "targets", "dead", "healthy"),
    ]
    assert rec[0]["bos_before"] == 58 * S and rec[0]["bos_after"] == 12 * S and rec[0]["delta"] == -46 * S
    assert all(r["drifting"] for r in rec + iat)
    # a borderline crossing: L1H2 recovers with a move of 14/64, which a 0.25 threshold does not call drift
    rec_wide, _ = compare([diag(BEFORE), diag(AFTER)], zone=PLAN, drift_threshold=0.25).transitions()
    assert [(r["head"], r["drifting"]) for r in rec_wide] == [("L1H0", True), ("L1H2", False), ("L2H0", True)]
    assert [(r["head"], r["zone"], r["before"], r["after"]) for r in iat] == [("L2H2", "outside_zone", "healthy", "bos_sink")]
    # a low-entropy head (L0H0) is not collapsed: staying low-entropy is no transition
    rows = {r["head"]: r for r in compare([diag(BEFORE), diag(AFTER)], zone=PLAN).per_head()}
    assert len(rows) == 12 and rows["L0H0"]["before"] == rows["L0H0"]["after"] == "low_entropy"
    assert rows["L2H2"] == {"head": "L2H2", "zone": "outside_zone", "bos_before": 30 * S, "bos_after": 34 * S, "delta": 4 * S,
                            "before": "healthy", "after": "bos_sink", "drifting": True}


def test_column_table_leaves_targets_out_and_tracks_the_trend():
    c = compare([diag(BEFORE), diag(MID), diag(AFTER)], zone=PLAN)
    cols = c.columns()
    assert [r["heads"] for r in cols] == [1, 3, 3, 3]
    assert [r["targets"] for r in cols] == [2, 0, 0, 0]
    assert [r["mean_abs_delta"] for r in cols] == [[0.0, 0.0], [round(4 / 3 * S, 6), 12 / 3 * S], [6 * S, 6 * S], [S, S]]
    assert [r["drifting"] for r in cols] == [[0, 0], [1, 2], [2, 2], [0, 0]]
    assert cols[1]["change"] == pytest.approx(8 / 3 * S, abs=1e-6) and cols[2]["change"] == 0.0
    assert all(r["change"] is None for r in compare([diag(BEFORE), diag(AFTER)], zone=PLAN).columns())  # one later input: no trend


def test_trajectory_separates_early_global_from_late_in_zone_drift():
    c = compare([diag(BEFORE), diag(MID), diag(AFTER)], zone=PLAN, labels=["stock", "early", "late"])
    traj = c.trajectory()
    assert [r["label"] for r in traj] == ["early", "late"]
    assert [r["zones"]["outside_zone"]["mean_abs_delta"] for r in traj] == [25 / 8 * S, 25 / 8 * S]
    assert [r["zones"]["frozen_in_zone"]["mean_abs_delta"] for r in traj] == [0.0, 4 * S]
    assert [r["zones"]["frozen_in_zone"]["drifting"] for r in traj] == [0, 1]
    assert [(r["recoveries"], r["iatrogenic"]) for r in traj] == [(3, 1), (3, 1)]
    ph = c.phenomena()
    assert ph["outside_zone"]["half_peak_at"] == "early" and ph["outside_zone"]["half_peak_position"] == 0.5
    assert ph["frozen_in_zone"]["half_peak_at"] == "late" and ph["frozen_in_zone"]["half_peak_position"] == 1.0
    assert ph["frozen_in_zone"]["peak_mean_abs_delta"] == 4 * S


def test_without_a_zone_every_head_is_outside():
    c = compare([diag(BEFORE), diag(AFTER)])
    z = c.zones()
    assert not c.has_zone and z["targets"]["heads"] == 0 and z["frozen_in_zone"]["heads"] == 0
    assert z["outside_zone"]["heads"] == 12 and z["outside_zone"]["drifting"] == 6
    assert z["outside_zone"]["mean_abs_delta"] == (46 + 46 + 6 + 2 + 25) / 12 * S
    assert [r["heads"] for r in c.columns()] == [3, 3, 3, 3]
    assert c.phenomena()["frozen_in_zone"]["half_peak_at"] is None


def test_json_round_trip(tmp_path):
    c = compare([diag(BEFORE), diag(MID), diag(AFTER)], zone=PLAN, labels=["s", "m", "a"])
    doc = c.to_dict()
    assert doc["kind"] == "comparison" and doc["schema_version"]
    assert doc["final"]["zones"]["outside_zone"]["drifting"] == 3 and len(doc["final"]["recoveries"]) == 3
    assert [i["counts"]["bos_sink"] for i in doc["inputs"]] == [2, 1, 1]
    back = Comparison.load(c.save(tmp_path / "comparison.json"))
    assert back.to_dict() == doc


def test_run_folder_gives_stock_plus_every_evaluation_and_its_plan(tmp_path):
    run = fake_run(tmp_path / "run", [diag(BEFORE), diag(BEFORE), diag(MID), diag(AFTER)])
    c = compare([run])
    assert c.labels == ["stock", "step 0 (re-init)", "step 4", "step 8"] and c.steps == [None, 0, 4, 8]
    assert c.zone_source.startswith("plan of run") and [str(h) for h in c.frozen_in_zone] == ["L1H1", "L2H1"]
    assert c.zones(1)["outside_zone"]["drifting"] == 0  # step 0 equals stock here
    assert c.zones()["outside_zone"]["drifting"] == 3
    # Among other inputs, a run folder stands for its last evaluation; an explicit zone wins.
    c2 = compare([tmp_path / "run" / "diagnoses" / "stock.json", run], zone=PLAN)
    assert c2.labels == ["stock", "run step 8"] and c2.zone_source == "plan given"


def test_notes_and_errors(tmp_path):
    c = compare([diag(BEFORE), diag(AFTER, prompts=("a", "c"))])
    assert any("other prompts" in n for n in c.notes)
    with pytest.raises(HeadsurgeonError, match="different models .*num_layers 3 vs 2"):
        compare([diag(BEFORE), diag([[1, 2], [3, 4]])])
    with pytest.raises(HeadsurgeonError, match="different shapes"):  # allowed models still need one shape
        compare([diag(BEFORE), diag([[1, 2], [3, 4]])], allow_different_models=True)
    for bad in (0, float("nan"), float("inf")):
        with pytest.raises(HeadsurgeonError, match="--drift-threshold must be a finite number > 0"):
            compare([diag(BEFORE), diag(AFTER)], drift_threshold=bad)
    with pytest.raises(HeadsurgeonError, match="one label per diagnosis"):
        compare([diag(BEFORE), diag(AFTER)], labels=["x"])
    with pytest.raises(HeadsurgeonError, match="at least two"):
        compare([diag(BEFORE)])
    with pytest.raises(HeadsurgeonError, match="neither a diagnosis"):
        compare([tmp_path / "nothing.json", diag(AFTER)])
    from headsurgeon.models.adapters import HeadRef
    from headsurgeon.surgery import SurgeryPlan

    with pytest.raises(HeadsurgeonError, match="out of range"):
        compare([diag(BEFORE), diag(AFTER)], zone=SurgeryPlan(model={}, targets=[HeadRef(5, 0)]))
    with pytest.raises(HeadsurgeonError, match="not a later input"):
        compare([diag(BEFORE), diag(AFTER)]).delta(0)
