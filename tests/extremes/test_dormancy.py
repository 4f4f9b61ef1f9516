"""The active-dormant classification rule and the default choice of heads to intervene on."""

import numpy as np
import pytest

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.extremes import ExtremesSettings
from headsurgeon.extremes.dormancy import classify_dormancy, count_dormancy, domain_dependent_heads, pick_intervention_heads
from headsurgeon.extremes.settings import normalise_parts
from headsurgeon.models import HeadRef


def metric():
    # 3 domains x 1 layer x 5 heads
    return np.array([
        [[0.10, 0.90, 0.10, 0.45, 0.60]],  # prose
        [[0.20, 0.95, 0.80, 0.55, 0.60]],  # code
        [[0.05, 0.70, 0.30, 0.50, 0.20]],  # math
    ])


def test_classes_follow_the_margin_rule():
    classes = classify_dormancy(metric(), threshold=0.5, margin=0.3)
    assert classes[0].tolist() == ["always_active", "always_dormant", "domain_dependent", "borderline", "domain_dependent"]
    # head 4 spreads exactly 0.4; a wider margin makes it borderline
    assert classify_dormancy(metric(), threshold=0.5, margin=0.45)[0, 4] == "borderline"
    assert count_dormancy(classes) == {"always_active": 1, "always_dormant": 1, "domain_dependent": 2, "borderline": 1}


def test_domain_dependent_rows_carry_per_domain_numbers():
    m = metric()
    within = np.full_like(m, 0.05)
    rows = domain_dependent_heads(m, classify_dormancy(m, threshold=0.5, margin=0.3), ["prose", "code", "math"], threshold=0.5, within=within)
    assert [r["head"] for r in rows] == ["L0H2", "L0H4"]  # spread 0.7 before 0.4
    assert rows[0]["dormant_in"] == ["code"] and rows[0]["active_in"] == ["prose", "math"]
    assert rows[0]["values"] == {"prose": 0.1, "code": 0.8, "math": 0.3}
    assert rows[0]["within_domain_std"] == pytest.approx(0.05)


def test_default_intervention_heads():
    m = metric()
    picked = pick_intervention_heads(m, classify_dormancy(m, threshold=0.5, margin=0.3), n_dependent=1, n_controls=1)
    assert picked == [(HeadRef(0, 2), "domain_dependent"), (HeadRef(0, 1), "always_dormant"), (HeadRef(0, 0), "always_active")]


def test_settings_and_parts_validation():
    with pytest.raises(HeadsurgeonError, match="sink-threshold"):
        ExtremesSettings(sink_threshold=1.5)
    with pytest.raises(HeadsurgeonError, match="--dormancy-metric must be one of"):
        ExtremesSettings(dormancy_metric="entropy")
    with pytest.raises(HeadsurgeonError, match="report-dims"):
        ExtremesSettings(report_dims=9, top_k_dims=4)
    assert ExtremesSettings.from_dict(ExtremesSettings(margin=0.2).to_dict()).margin == 0.2
    assert normalise_parts("peak") == ("sinks", "peak")
    assert normalise_parts(["interventions"]) == ("sinks", "dormancy", "interventions")
    with pytest.raises(HeadsurgeonError, match="unknown part"):
        normalise_parts("sinks,bogus")
