"""Statistics: bootstrap intervals on known data and the verdict rule on synthetic numbers."""

import math

import numpy as np
import pytest

from headsurgeon.studies.stats import HOLDS, INCONCLUSIVE, REVERSED, bootstrap_ci, decide, paired_verdict, summarize


def test_bootstrap_ci_covers_the_mean_with_the_expected_width():
    rng = np.random.default_rng(1)
    x = rng.normal(10.0, 2.0, size=400)
    lo, hi = bootstrap_ci(x, level=0.95, n_boot=4000, seed=0)
    assert lo < x.mean() < hi
    assert lo < 10.0 < hi
    expected = 2 * 1.96 * x.std(ddof=1) / math.sqrt(x.size)  # normal-theory width of the mean's 95% interval
    assert abs((hi - lo) - expected) / expected < 0.15
    # a 50% interval is narrower than a 95% one, and the same seed gives the same interval
    lo50, hi50 = bootstrap_ci(x, level=0.5, n_boot=4000, seed=0)
    assert hi50 - lo50 < 0.5 * (hi - lo)
    assert bootstrap_ci(x, seed=3) == bootstrap_ci(x, seed=3)


def test_bootstrap_ci_degenerate_cases():
    assert bootstrap_ci([4.0]) == (4.0, 4.0)
    assert bootstrap_ci([2.0, 2.0, 2.0]) == (2.0, 2.0)
    with pytest.raises(ValueError):
        bootstrap_ci([float("nan")])


def test_three_seed_interval_is_about_the_range():
    """With 3 values the percentile interval reaches the smallest and largest value (documented)."""
    lo, hi = bootstrap_ci([1.0, 2.0, 6.0], n_boot=20000)
    assert lo == pytest.approx(1.0, abs=0.34) and hi == pytest.approx(6.0, abs=0.34)


def test_summarize_skips_missing_values():
    s = summarize([1.0, None, float("nan"), 3.0])
    assert s.n == 2 and s.mean == 2.0 and s.min == 1.0 and s.max == 3.0 and s.std == pytest.approx(math.sqrt(2))
    assert s.values == [1.0, 3.0]
    empty = summarize([None])
    assert empty.n == 0 and empty.mean is None and empty.text() == "n/a"


def _verdict(arm, ref, better="lower"):
    return paired_verdict(claim="c", text="arm beats ref", metric="m", better=better, arm="a", reference="r",
                          arm_values=dict(enumerate(arm)), reference_values=dict(enumerate(ref)), n_boot=4000)


def test_verdict_holds_when_every_seed_favours_the_arm():
    v = _verdict([10.0, 11.0, 12.5], [11.0, 12.2, 13.4])  # lower is better, arm lower by ~1 on each seed
    assert v.outcome == HOLDS
    assert v.difference.mean == pytest.approx((1.0 + 1.2 + 0.9) / 3)
    assert v.difference.ci_low > 0
    assert v.relative == pytest.approx(v.difference.mean / np.mean([11.0, 12.2, 13.4]))
    assert v.d_z == pytest.approx(v.difference.mean / np.std([1.0, 1.2, 0.9], ddof=1))
    assert v.seeds == [0, 1, 2]


def test_verdict_reversed_and_higher_is_better():
    assert _verdict([0.1, 0.0, 0.2], [0.9, 1.0, 0.8], better="higher").outcome == REVERSED
    assert _verdict([0.9, 1.0, 0.8], [0.1, 0.0, 0.2], better="higher").outcome == HOLDS


def test_verdict_inconclusive_cases():
    assert _verdict([10.0, 12.0, 11.0], [11.0, 11.0, 11.0]).outcome == INCONCLUSIVE  # seeds disagree
    assert _verdict([10.0], [11.0]).outcome == INCONCLUSIVE  # one seed is never enough
    same = _verdict([5.0, 6.0, 7.0], [5.0, 6.0, 7.0])
    assert same.outcome == INCONCLUSIVE and same.d_z is None  # no difference at all
    # seeds missing on one side are left out of the pairing
    v = paired_verdict(claim="c", text="t", metric="m", better="lower", arm="a", reference="r",
                       arm_values={0: 1.0, 1: 1.0, 2: None}, reference_values={0: 2.0, 1: 2.0, 3: 2.0})
    assert v.seeds == [0, 1] and v.outcome == HOLDS


def test_decide_needs_the_interval_strictly_off_zero():
    s = summarize([0.0, 1.0, 2.0])
    assert s.ci_low <= 0.0 and decide(s) == INCONCLUSIVE
