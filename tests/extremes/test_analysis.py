"""Per-prompt drain/peak ratios and massive dimensions on hand-made reductions."""

import numpy as np
import pytest

from headsurgeon.extremes import ExtremesSettings
from headsurgeon.extremes.analysis import massive_dims, summarise_prompt
from headsurgeon.extremes.probe import PromptProbe


def synthetic_probe(T=8, L=2, H=2, D=6):
    rng = np.random.default_rng(0)
    received = np.zeros((L, H, T))
    received[..., 0] = 0.8 * (T - 1)  # every head sinks on position 0
    received[0, 0, 3] = 0.9 * (T - 3)  # one head (of 4) also sinks on position 3
    hidden = rng.normal(size=(L + 1, T, D))
    hidden[1:, 0, 4] = 500.0  # a massive dimension at position 0 after block 0
    hidden[1:, 3, 2] = -50.0  # a smaller one at the later sink
    k = 3
    idx = np.argsort(-np.abs(hidden), axis=-1)[..., :k]
    return hidden, PromptProbe(
        length=T,
        received=received,
        value_norm=rng.uniform(1, 2, size=(L, H, T)) * np.where(np.arange(T) == 0, 0.1, 1.0),
        resid_norm=np.linalg.norm(hidden, axis=-1),
        top_idx=idx,
        top_val=np.take_along_axis(hidden, idx, -1),
        median_abs=np.median(np.abs(hidden).reshape(L + 1, -1), axis=-1),
        dim_abs_sum=np.abs(hidden).sum(1),
    )


def test_groups_and_ratios_match_direct_computation():
    _, p = synthetic_probe()
    s = summarise_prompt(p, ExtremesSettings(sink_head_fraction=0.25, min_visible_queries=2))
    assert s.sink_positions.tolist() == [0, 3]
    rest = [1, 2, 4, 5, 6, 7]
    np.testing.assert_allclose(s.value_first, p.value_norm[..., 0])
    np.testing.assert_allclose(s.value_later, p.value_norm[..., 3])
    np.testing.assert_allclose(s.value_other, np.median(p.value_norm[..., rest], -1))
    np.testing.assert_allclose(s.resid_first / s.resid_other, p.resid_norm[:, 0] / np.median(p.resid_norm[:, rest], -1))
    np.testing.assert_allclose(s.bos_mass, 0.8)
    assert s.sinks_first.all() and s.sinks_elsewhere.tolist() == [[True, False], [False, False]]


def test_no_later_sinks_gives_nan_not_a_number():
    _, p = synthetic_probe()
    s = summarise_prompt(p, ExtremesSettings(sink_head_fraction=0.5))
    assert s.sink_positions.tolist() == [0]
    assert np.isnan(s.value_later).all() and np.isnan(s.resid_later).all()


def test_massive_dims_name_the_planted_dimension():
    hidden, p = synthetic_probe()
    s = summarise_prompt(p, ExtremesSettings(sink_head_fraction=0.25, min_visible_queries=2))
    first = massive_dims([p], [s], report=2, group="first")
    later = massive_dims([p], [s], report=1, group="later")
    assert [layer[0]["dim"] for layer in first[1:]] == [4, 4]
    top = first[1][0]
    assert top["abs"] == pytest.approx(500.0) and top["signed"] == pytest.approx(500.0) and top["coverage"] == 1.0
    assert top["abs_elsewhere"] == pytest.approx(np.abs(hidden[1, 1:, 4]).mean(), rel=1e-4)
    assert top["x_median"] == pytest.approx(500.0 / p.median_abs[1], rel=1e-3)
    assert later[1][0]["dim"] == 2 and later[1][0]["signed"] == pytest.approx(-50.0)
