"""What the comparison and the report read: diagnoses and surgery run folders.

A run folder (a :class:`~headsurgeon.surgery.folder.RunFolder`, written by ``operate`` or the
study's LoRA arm) holds ``manifest.json`` and one diagnosis per evaluation: ``stock`` (the input
model), ``step-000000`` (the start) and ``step-NNNNNN`` for every later evaluation. This module
turns those, or loose diagnosis files, into a labelled list of :class:`Diagnosis` objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from headsurgeon.diagnosis import Diagnosis
from headsurgeon.errors import HeadsurgeonError
from headsurgeon.surgery.folder import MANIFEST, RunFolder
from headsurgeon.surgery.manifest import RunManifest, load_manifest
from headsurgeon.surgery.plan import SurgeryPlan


@dataclass
class Point:
    """One diagnosis in a comparison: what it is called, where it came from, its run step."""

    label: str
    diagnosis: Diagnosis
    source: str
    step: int | None = None


@dataclass
class RunRecord:
    """A run folder as the readers see it: its typed manifest, plan and the evaluations that have a diagnosis."""

    run_dir: Path
    manifest: RunManifest
    plan: SurgeryPlan
    evals: list[dict] = field(default_factory=list)  # history rows with a diagnosis file

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.run_dir)

    @property
    def finished(self) -> bool:
        return self.manifest.finished

    def stock_point(self) -> Point:
        stock = self.manifest.stock or {}
        rel = stock.get("diagnosis")
        if not rel:
            raise HeadsurgeonError(f"run {self.run_dir} has no stock diagnosis; it was run with diagnose_every_eval off")
        return Point("stock", _load(self.folder.resolve(rel)), str(self.folder.resolve(rel)), None)

    def eval_points(self) -> list[Point]:
        return [Point(eval_label(r), _load(self.folder.resolve(r["diagnosis"])), str(self.folder.resolve(r["diagnosis"])), int(r["step"]))
                for r in self.evals]

    def points(self) -> list[Point]:
        """Stock, then every evaluation in step order."""
        return [self.stock_point(), *self.eval_points()]


def eval_label(row: dict) -> str:
    return "step 0 (re-init)" if row["step"] == 0 else f"step {row['step']}"


def is_run_dir(path: str | Path) -> bool:
    return Path(path).is_dir() and RunFolder(path).holds_run()


def load_run(run_dir: str | Path) -> RunRecord:
    """Read a run folder (finished or still running); error if it is not one."""
    run_dir = Path(run_dir).expanduser()
    if not is_run_dir(run_dir):
        raise HeadsurgeonError(f"{run_dir} is not a surgery run folder (no {MANIFEST}); pass the --out folder of `headsurgeon operate`")
    folder = RunFolder(run_dir)
    manifest = load_manifest(folder)
    plan = SurgeryPlan.from_dict(manifest.plan)
    evals = sorted((r for r in manifest.history if r.get("diagnosis")), key=lambda r: r["step"])
    evals = [r for r in evals if folder.resolve(r["diagnosis"]).is_file()]
    return RunRecord(run_dir, manifest, plan, evals)


def _load(path: Path) -> Diagnosis:
    return Diagnosis.load(path)


def resolve_points(inputs: list, labels: list[str] | None = None) -> tuple[list[Point], RunRecord | None]:
    """Turn the user's inputs into labelled points, plus the first run folder met (for its plan).

    * a :class:`Diagnosis` or a ``diagnosis.json`` path: one point;
    * a run folder given *alone*: its stock diagnosis followed by every evaluation (the whole
      trajectory);
    * a run folder among other inputs: its stock diagnosis if it comes first, otherwise its last
      evaluation (the model it ended with), labelled with the folder name.
    """
    if not inputs:
        raise HeadsurgeonError("compare needs at least one run folder or two diagnoses")
    points: list[Point] = []
    first_run: RunRecord | None = None
    for i, item in enumerate(inputs):
        if isinstance(item, Diagnosis):
            points.append(Point(f"input {i + 1}", item, "in-memory"))
            continue
        path = Path(item).expanduser()
        if is_run_dir(path):
            run = load_run(path)
            first_run = first_run or run
            if len(inputs) == 1:
                points += run.points()
            elif i == 0:
                points.append(Point(f"{path.name} stock", run.stock_point().diagnosis, str(path), None))
            else:
                if not run.evals:
                    raise HeadsurgeonError(f"run {path} has no evaluation with a diagnosis yet; wait for its first evaluation")
                last = run.eval_points()[-1]
                points.append(Point(f"{path.name} {last.label}", last.diagnosis, last.source, last.step))
        elif path.is_file():
            points.append(Point(path.parent.name if path.name == "diagnosis.json" else path.stem, _load(path), str(path)))
        else:
            raise HeadsurgeonError(f"{path} is neither a diagnosis JSON file nor a surgery run folder; check the path")
    if len(points) < 2:
        raise HeadsurgeonError("compare needs at least two diagnoses (or a run folder with at least one evaluation)")
    if labels:
        if len(labels) != len(points):
            raise HeadsurgeonError(f"{len(labels)} labels given for {len(points)} diagnoses; give one label per diagnosis")
        for p, lab in zip(points, labels):
            p.label = lab
    seen: dict[str, int] = {}
    for p in points:  # labels key tables and figure legends: keep them distinct
        seen[p.label] = seen.get(p.label, 0) + 1
        if seen[p.label] > 1:
            p.label = f"{p.label} ({seen[p.label]})"
    return points, first_run
