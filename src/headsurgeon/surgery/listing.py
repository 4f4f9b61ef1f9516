"""``list_runs``: the surgery runs under a folder and the state of each (``headsurgeon runs``).

A researcher with a folder of runs (several passes, a study's arms and seeds) needs to know which
are done, which can be resumed by re-running their command, and which are damaged, without
opening each manifest. The state is read from the files alone (nothing is loaded or changed):

* ``finished``: the manifest says so and the final weights are there (``models/final`` for
  surgery, ``adapter/final.safetensors`` for a study's LoRA arm);
* ``resumable``: the manifest says ``running`` (or a run was interrupted) and its last training
  checkpoint, if any, is present: re-running the same command continues from it;
* ``stopped``: training stopped itself (e.g. a NaN loss); the manifest says why;
* ``damaged``: the manifest is unreadable or from another schema, a finished run lacks its final
  model, or the checkpoint pointer names a missing folder.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.io import read_json_document

from .manifest import MANIFEST

STATES = ("finished", "resumable", "stopped", "damaged")
#: Run kinds listed, and the file a finished run of each kind must hold.
_FINAL = {"surgery_run": "models/final/config.json", "lora_run": "adapter/final.safetensors"}


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


def _checkpoint_step(run_dir: Path) -> tuple[int | None, str | None]:
    """``(step of the last training checkpoint, problem)``."""
    pointer = run_dir / "checkpoints" / "latest.json"
    if not pointer.is_file():
        return None, None
    try:
        doc = json.loads(pointer.read_text())
        target = run_dir / "checkpoints" / doc["path"]
    except (OSError, ValueError, KeyError, TypeError):
        return None, "checkpoints/latest.json is unreadable"
    if not target.is_dir():
        return None, f"checkpoints/latest.json names {doc['path']}, which is missing"
    return doc.get("step"), None


def run_state(run_dir: str | Path) -> RunState:
    """The state of one run folder (one holding ``manifest.json``)."""
    run_dir = Path(run_dir)
    try:
        m = read_json_document(run_dir / MANIFEST)
    except HeadsurgeonError as exc:
        return RunState(str(run_dir), "damaged", "unknown", str(exc).split(";")[0].replace(str(run_dir / MANIFEST), "manifest.json"))
    kind = str(m.get("kind"))
    if kind not in _FINAL:
        return RunState(str(run_dir), "damaged", kind, f"manifest.json is a '{kind}' document, not a training run's")
    cfg = m.get("config") or {}
    hist = m.get("history") or []
    base = dict(path=str(run_dir), kind=kind, model=(m.get("model") or {}).get("name"), targets=len((m.get("plan") or {}).get("targets", [])),
                step=hist[-1]["step"] if hist else None, total_steps=cfg.get("max_steps"), updated=m.get("updated"))
    status = str(m.get("status"))
    step, problem = _checkpoint_step(run_dir)
    if status == "finished":
        if not (run_dir / _FINAL[kind]).is_file():
            return RunState(state="damaged", detail=f"finished, but {_FINAL[kind]} is missing", **base)
        held = (m.get("invariant") or {}).get("final", {}).get("held")
        return RunState(state="finished", detail="invariant held" if held else "invariant VIOLATED", **base)
    if status.startswith("stopped"):
        return RunState(state="stopped", detail=status, **base)
    if problem:
        return RunState(state="damaged", detail=problem, **base)
    where = f"from the step-{step} checkpoint" if step is not None else "from the start (no training checkpoint yet)"
    return RunState(state="resumable", detail=f"status '{status}'; re-running its command resumes {where}", **base)


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
