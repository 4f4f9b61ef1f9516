"""``list_runs``: the surgery runs under a folder and the state of each (``headsurgeon runs``).

A researcher with a folder of runs (several passes, a study's arms and seeds) needs to know which
are done, which can be resumed by re-running their command, and which are damaged, without
opening each manifest. The state is read from the files alone (nothing is loaded or changed):

* ``finished``: the manifest says so and the final weights are there (``models/final`` for
  surgery, ``adapter/final.safetensors`` for a study's LoRA arm), or, for a surgery folder
  carried without ``models/`` (``scripts/study-state``), its last step's slices in an intact
  checkpoint generation;
* ``running``: a process is working in the folder now (it holds the folder's lock);
* ``resumable``: the manifest says ``running`` (or a run was interrupted) and a training
  checkpoint generation that matches its checksums is there (or none yet: the run restarts from
  the stock evaluation): re-running the same command continues from it;
* ``stopped``: training stopped itself (e.g. a NaN loss); the manifest says why;
* ``damaged``: the manifest is unreadable or from another schema, a finished run lacks its final
  weights, or no checkpoint generation matches its checksums.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from headsurgeon.errors import HeadsurgeonError

from .checkpoint import damage, final_pieces_generation, generations
from .folder import MANIFEST, RunFolder
from .manifest import RunManifest, load_manifest

STATES = ("finished", "running", "resumable", "stopped", "damaged")


@dataclass(frozen=True)
class RunState:
    """One run folder: where, which state, why, and its headline numbers when readable."""

    path: str
    state: str
    kind: str  # surgery_run or lora_run (a study's LoRA arm)
    detail: str
    model: str | None = None
    targets: int | None = None
    step: int | None = None
    total_steps: int | None = None
    updated: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def final_weights(folder: RunFolder, kind: str) -> Path:
    """The file a finished run of ``kind`` must hold."""
    return folder.adapter("final") if kind == "lora_run" else folder.model("final") / "config.json"


def _resume_point(folder: RunFolder) -> tuple[int | None, str | None]:
    """``(step of the newest intact checkpoint generation, problem)``; damaged newer ones are named."""
    gens = generations(folder.checkpoints)
    skipped = []
    for g in gens:
        why = damage(g)
        if why is None:
            note = f" (newer step {', '.join(skipped)} damaged: skipped)" if skipped else ""
            return int(g.name[5:]), note or None
        skipped.append(g.name[5:].lstrip("0") or "0")
    if gens:
        return None, f"no checkpoint generation is intact ({', '.join('step ' + s for s in skipped)})"
    return None, None


def run_state(run_dir: str | Path) -> RunState:
    """The state of one run folder (one holding ``manifest.json``)."""
    folder = RunFolder(run_dir)
    try:
        m: RunManifest = load_manifest(folder)
    except HeadsurgeonError as exc:
        return RunState(str(folder.root), "damaged", "unknown", str(exc).split(";")[0].replace(str(folder.manifest), MANIFEST))
    hist = m.history
    targets = m.plan.get("targets") or {}  # {layer: [heads]} as plans save it
    n_targets = sum(len(hs) for hs in targets.values()) if isinstance(targets, dict) else len(targets)
    base = dict(path=str(folder.root), kind=m.kind, model=m.model.get("name"), targets=n_targets,
                step=hist[-1]["step"] if hist else None, total_steps=m.config.get("max_steps"), updated=m.updated)
    if m.finished:
        final = final_weights(folder, m.kind)
        if not final.is_file():
            step = hist[-1]["step"] if hist else None
            if m.kind != "lora_run" and step is not None and final_pieces_generation(folder.checkpoints, step) is not None:
                # a folder carried without models/ (scripts/study-state): the slices are in the checkpoint
                return RunState(state="finished", detail=f"models/ not in this folder; the final slices are in the step-{step} checkpoint",
                                **base)
            return RunState(state="damaged", detail=f"finished, but {final.relative_to(folder.root)} is missing", **base)
        if m.kind == "lora_run":  # no frozen-weights invariant to report: the base model is never written
            return RunState(state="finished", detail="LoRA adapter written", **base)
        held = (m.invariant or {}).get("final", {}).get("held")
        return RunState(state="finished", detail="invariant held" if held else "invariant VIOLATED", **base)
    if m.status.startswith("stopped"):
        return RunState(state="stopped", detail=m.status, **base)
    holder = folder.lock_holder()
    if holder is not None:
        return RunState(state="running", detail=f"process {holder} is working in it now (status '{m.status}')", **base)
    step, problem = _resume_point(folder)
    if step is None and problem:
        return RunState(state="damaged", detail=problem, **base)
    where = f"from the step-{step} checkpoint{problem or ''}" if step is not None else "from the start (no training checkpoint yet)"
    return RunState(state="resumable", detail=f"status '{m.status}'; re-running its command resumes {where}", **base)


def list_runs(folder: str | Path, *, max_depth: int = 4) -> list[RunState]:
    """Every run folder under ``folder`` (itself included), in path order, with its state."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise HeadsurgeonError(f"{root} is not a folder; pass the folder that holds your runs (e.g. out/)")
    found = []

    def walk(d: Path, depth: int) -> None:
        if (d / MANIFEST).is_file():
            found.append(run_state(d))
            return  # a run's own subfolders (models/, checkpoints/) are not runs
        if depth >= max_depth:
            return
        try:
            children = sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            return
        for c in children:
            walk(c, depth + 1)

    walk(root, 0)
    return found
