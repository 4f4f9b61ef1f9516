"""What a training run tells its user while it works, on stderr (stdout stays clean for ``--json``).

A surgery run on a CPU spends minutes in phases that show no training bar (the stock
evaluation, the step-0 evaluation, the final save and verification); without a word they look
like a hang. :class:`Narrator` says before training how many steps, tokens and evaluations the
run will take, a line per evaluation with its numbers, and after this session's first step how
long the rest will take, from that step's measured time. Only the main process speaks.
"""

from __future__ import annotations

import sys

from tqdm.auto import tqdm

from .estimate import RunShape, duration, evaluation_steps


class Narrator:
    def __init__(self, enabled: bool):
        self.enabled = enabled

    def say(self, text: str) -> None:
        if self.enabled:
            tqdm.write(text, file=sys.stderr)  # above any progress bar, not through it

    def shape(self, shape: RunShape) -> None:
        self.say(f"run: {shape.describe()}")

    def evaluated(self, label: str, row: dict, n_targets: int) -> None:
        ppl = ", ".join(f"{k[:-4]} ppl {row[k]:.3f}" for k in ("train_ppl", "heldout_ppl", "other_ppl") if k in row)
        healthy = f", targets healthy {row['targets_healthy']}/{n_targets}" if "targets_healthy" in row else ""
        self.say(f"evaluated {label} in {row['eval_seconds']:.0f} s: {ppl}{healthy}")

    def training(self, n_targets: int, n_parameters: int, resumed_at: int) -> None:
        self.say(f"training {n_targets} target heads ({n_parameters:,} trainable parameters)"
                 + (f", resuming at step {resumed_at}" if resumed_at else ""))

    def remaining(self, *, step: int, step_seconds: float, end: int, per_epoch: int, eval_every: int,
                  eval_seconds: float | None, early_stopping: bool) -> None:
        """After this session's first step (``step``, which took ``step_seconds``): the time the rest needs."""
        n_evals = sum(1 for k in evaluation_steps(end, per_epoch, eval_every) if k >= step)
        evals = f" and {n_evals} evaluations ~{duration(n_evals * eval_seconds)}" if eval_seconds else ""
        self.say(f"first step took {step_seconds:.1f} s: the remaining {end - step:,} steps ~{duration((end - step) * step_seconds)}"
                 f"{evals}" + (" (at most: early stopping may end it sooner)" if early_stopping else ""))
