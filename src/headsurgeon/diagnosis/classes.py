"""Head classes and their thresholds.

healthy: BOS mass <= ``sink`` · BOS-sink: ``sink`` < BOS mass <= ``dead`` · DEAD: BOS mass > ``dead``
· low-entropy: a healthy head whose entropy is below ``low_entropy`` nats. Defaults are the
paper's (0.50 / 0.95 / 0.50). "Collapsed" means BOS-sink or DEAD.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.options import check_fields, option

HEALTHY, BOS_SINK, DEAD, LOW_ENTROPY = "healthy", "bos_sink", "dead", "low_entropy"
CLASSES = (HEALTHY, BOS_SINK, DEAD, LOW_ENTROPY)
COLLAPSED = (BOS_SINK, DEAD)
LABELS = {HEALTHY: "healthy", BOS_SINK: "BOS-sink", DEAD: "DEAD", LOW_ENTROPY: "low-entropy"}

#: Sink thresholds at which class counts are always reported (bimodality check).
SWEEP = (0.4, 0.5, 0.6)


@dataclass(frozen=True)
class Thresholds:
    sink: float = option(0.5, "BOS mass above this is BOS-sink", min=0, max=1, flag="--sink-threshold")
    dead: float = option(0.95, "BOS mass above this is DEAD", min=0, max=1, flag="--dead-threshold")
    low_entropy: float = option(0.5, "healthy heads below this entropy (nats) are low-entropy", min=0, flag="--low-entropy-threshold")

    def __post_init__(self):
        check_fields(self)
        if not (0.0 <= self.sink < self.dead <= 1.0):
            raise HeadsurgeonError(
                f"thresholds out of order: need 0 <= sink ({self.sink}) < dead ({self.dead}) <= 1; fix --sink-threshold/--dead-threshold"
            )
        if self.low_entropy < 0:
            raise HeadsurgeonError(f"--low-entropy-threshold must be >= 0 nats, not {self.low_entropy}; e.g. --low-entropy-threshold 0.5")

    def to_dict(self) -> dict:
        return asdict(self)


def classify(bos_mass: np.ndarray, entropy: np.ndarray, t: Thresholds) -> np.ndarray:
    """Class name per head (same shape as the inputs)."""
    out = np.full(bos_mass.shape, HEALTHY, dtype=object)
    out[(bos_mass <= t.sink) & (entropy < t.low_entropy)] = LOW_ENTROPY
    out[bos_mass > t.sink] = BOS_SINK
    out[bos_mass > t.dead] = DEAD
    return out


def count(classes: np.ndarray) -> dict[str, int]:
    return {c: int((classes == c).sum()) for c in CLASSES}
