"""Multi-pass surgery: a second pass starts from the first pass's best model with a plan built
from that model's own diagnosis (the paper's pass 2 fixed the heads pass 1 left collapsed, and
the two it had made collapse)."""

from __future__ import annotations

from pathlib import Path

from headsurgeon.diagnosis import Diagnosis
from headsurgeon.errors import HeadsurgeonError
from headsurgeon.models.preflight import weights_fingerprint

from .folder import RunFolder
from .manifest import load_manifest
from .plan import SurgeryPlan
from .rules import make_plan


def best_diagnosis(run_dir: str | Path) -> Diagnosis:
    """The diagnosis recorded at the run's best step (its last evaluation if there is no best)."""
    folder = RunFolder(run_dir)
    m = load_manifest(folder)
    best = m.best or {}
    rows = [r for r in m.history if r.get("step") == best.get("step") and r.get("diagnosis")]
    rows = rows or [r for r in m.history if r.get("diagnosis")][-1:]
    if not rows:
        raise HeadsurgeonError(f"{run_dir} recorded no diagnoses (diagnose_every_eval was off); run `headsurgeon diagnose` on its best model")
    diag = Diagnosis.load(folder.resolve(rows[-1]["diagnosis"]))
    # Diagnoses made during training describe the stock model's files; the plan for the next
    # pass is for the saved best model, so it carries that folder's weights fingerprint.
    best_dir = Path(run_dir) / "models" / "best"
    fingerprint = weights_fingerprint(best_dir) if (best_dir / "config.json").is_file() else None
    diag.model = {**diag.model, "source": str(best_dir.resolve()), "weights_fingerprint": fingerprint}
    if fingerprint is None:
        diag.model.pop("weights_fingerprint")
    return diag


def best_model_dir(run_dir: str | Path) -> Path:
    path = RunFolder(run_dir).model("best")
    if not (path / "config.json").is_file():
        raise HeadsurgeonError(f"{run_dir} has no best model yet; let the run reach its first evaluation")
    return path


def next_pass_plan(run_dir: str | Path, **rules) -> SurgeryPlan:
    """A plan for the next pass, from the best model's diagnosis; ``rules`` as for :func:`make_plan`."""
    plan = make_plan(best_diagnosis(run_dir), **rules)
    plan.rules.insert(0, f"pass after {Path(run_dir).name}: rules applied to its best model's diagnosis")
    return plan
