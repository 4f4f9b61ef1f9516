"""Statistics of a study: per-arm summaries, bootstrap intervals, paired comparisons, verdicts.

Every arm runs the same seeds, and a seed fixes the held-out split, the data order and the
re-initialisation, so two arms are compared *paired by seed*: ``d_s = value_B(s) - value_A(s)``
(oriented so that a positive ``d`` favours the arm the claim is about). A claim

* **holds** when the bootstrap confidence interval of the mean paired difference lies
  entirely above 0,
* is **reversed** when it lies entirely below 0 (the opposite is what the data show),
* is **inconclusive** otherwise, or when fewer than two seeds are paired.

The interval is a percentile bootstrap over seeds (numpy, seeded). With very few seeds it is
optimistic: with 3 seeds the 2.5 % quantile of the resampled means is the smallest seed's value
(the all-smallest resample has probability 1/27 > 2.5 %), so "holds" then means "every seed
agrees", which a coin would do 1 time in 8. The verdict table says how many seeds it rests on;
more seeds make it stronger, and nothing here pretends otherwise.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

HOLDS, REVERSED, INCONCLUSIVE = "holds", "reversed", "inconclusive"


@dataclass
class Stats:
    """Summary of one figure over seeds: mean, sample std, range and a bootstrap CI of the mean."""

    n: int
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    ci_low: float | None
    ci_high: float | None
    values: list[float]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict) -> Stats:
        return cls(**doc)

    def text(self, digits: int = 3) -> str:
        """``mean ± std [low, high]`` for tables."""
        if self.mean is None:
            return "n/a"
        f = f"{{:.{digits}g}}"
        s = f.format(self.mean)
        if self.n > 1:
            s += f" ± {f.format(self.std)} [{f.format(self.ci_low)}, {f.format(self.ci_high)}]"
        return s


def bootstrap_ci(values, *, level: float = 0.95, n_boot: int = 10000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (finite numbers only).

    One value gives the degenerate interval ``(v, v)``; identical values give ``(v, v)`` too.
    """
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if x.size == 0:
        raise ValueError("bootstrap_ci needs at least one finite value")
    if x.size == 1:
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1.0 - alpha))


def summarize(values, *, level: float = 0.95, n_boot: int = 10000, seed: int = 0) -> Stats:
    """:class:`Stats` of the finite values among ``values`` (``None``/NaN/inf are left out)."""
    x = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not x:
        return Stats(0, None, None, None, None, None, None, [])
    arr = np.asarray(x)
    lo, hi = bootstrap_ci(arr, level=level, n_boot=n_boot, seed=seed)
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return Stats(len(x), float(arr.mean()), std, float(arr.min()), float(arr.max()), lo, hi, x)


@dataclass
class Verdict:
    """One claim tested on one metric, with its effect size.

    ``difference`` is the mean paired difference oriented so that positive favours the claim;
    ``relative`` is that difference over the mean of the reference arm (``None`` if it is 0);
    ``d_z`` is the standardised paired effect (mean / std of the differences; ``None`` when the
    differences do not vary).
    """

    claim: str
    text: str
    metric: str
    better: str  # "lower" or "higher"
    arm: str
    reference: str
    seeds: list[int]
    arm_mean: float | None
    reference_mean: float | None
    difference: Stats
    relative: float | None
    d_z: float | None
    outcome: str
    primary: bool = True

    def to_dict(self) -> dict:
        doc = asdict(self)
        doc["difference"] = self.difference.to_dict()
        return doc

    @classmethod
    def from_dict(cls, doc: dict) -> Verdict:
        doc = dict(doc)
        doc["difference"] = Stats.from_dict(doc["difference"])
        return cls(**doc)


def decide(diff: Stats) -> str:
    """``holds`` / ``reversed`` / ``inconclusive`` from the CI of the favourable-positive difference."""
    if diff.n < 2 or diff.ci_low is None:
        return INCONCLUSIVE
    if diff.ci_low > 0:
        return HOLDS
    if diff.ci_high < 0:
        return REVERSED
    return INCONCLUSIVE


def paired_verdict(
    *,
    claim: str,
    text: str,
    metric: str,
    better: str,
    arm: str,
    reference: str,
    arm_values: dict[int, float],
    reference_values: dict[int, float],
    level: float = 0.95,
    n_boot: int = 10000,
    primary: bool = True,
) -> Verdict:
    """Compare ``arm`` against ``reference`` on the seeds both have (values keyed by seed)."""
    if better not in ("lower", "higher"):
        raise ValueError("better must be 'lower' or 'higher'")
    seeds = sorted(
        s for s in set(arm_values) & set(reference_values)
        if arm_values[s] is not None and reference_values[s] is not None
        and math.isfinite(arm_values[s]) and math.isfinite(reference_values[s])
    )
    sign = 1.0 if better == "higher" else -1.0
    d = [sign * (arm_values[s] - reference_values[s]) for s in seeds]
    diff = summarize(d, level=level, n_boot=n_boot)
    a_mean = float(np.mean([arm_values[s] for s in seeds])) if seeds else None
    r_mean = float(np.mean([reference_values[s] for s in seeds])) if seeds else None
    relative = diff.mean / abs(r_mean) if seeds and r_mean not in (None, 0.0) else None
    d_z = diff.mean / diff.std if diff.n > 1 and diff.std and diff.std > 0 else None
    return Verdict(claim=claim, text=text, metric=metric, better=better, arm=arm, reference=reference, seeds=seeds,
                   arm_mean=a_mean, reference_mean=r_mean, difference=diff, relative=relative, d_z=d_z,
                   outcome=decide(diff), primary=primary)
