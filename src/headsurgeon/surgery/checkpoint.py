"""Checksummed, pickle-free checkpoints and atomic full-model folders.

A training state (``checkpoints/step-NNNNNN/``, one *generation*) holds only what training
changes, in formats that cannot run code when read:

* ``pieces.safetensors``: the trained tensors (surgical slices or LoRA matrices);
* ``optimizer.safetensors``: every tensor of the optimizer state and of the random states;
* ``state.json``: the rest of the optimizer and scheduler state, the random states' scalars,
  the progress counters, and the run's history rows and best point *up to this step*, so the
  history a resumed run continues from always belongs to the weights it continues from;
* ``checksums.json``: the SHA-256 of each of those files, written last.

A generation is written under a temporary name and renamed into place, so it exists whole or
not at all; the two newest are kept. On resume the newest generation whose files match their
checksums is used, and the user is told when a newer one was damaged and skipped.

A model (``models/<tag>/``) is a merged, plain ``save_pretrained`` folder that ``transformers``
loads without headsurgeon, written to a temporary folder and renamed into place; when it has the
same weights as a folder already written (the best step is the last), its files are hard links.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.io import read_document, write_document, write_json

from .killpoints import kill_point

KEEP_GENERATIONS = 2
CHECKSUMS = "checksums.json"
FILES = ("pieces.safetensors", "optimizer.safetensors", "state.json")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _plain_mode(path: Path, directory: bool) -> None:
    """``mkdtemp`` makes folders 0700; give them the mode ``mkdir`` would (0777 & ~umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if directory else 0o666) & ~umask)


def replace_dir(tmp: Path, final: Path) -> None:
    """Move the finished folder ``tmp`` to ``final``, replacing an older one."""
    if final.exists():
        old = final.with_name(f".old-{final.name}-{os.getpid()}")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


# --- optimizer, scheduler and random states without pickle ---------------------------------------
def _split_optimizer(sd: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer state dict as (tensors, JSON): tensors under ``optimizer/<param index>/<name>``."""
    tensors, scalars = {}, {}
    for idx, entry in sd["state"].items():
        for name, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"optimizer/{idx}/{name}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(idx), {})[name] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars, "indices": [int(i) for i in sd["state"]]}


def _join_optimizer(tensors: dict[str, torch.Tensor], doc: dict) -> dict:
    state: dict[int, dict] = {int(i): {} for i in doc["indices"]}
    for key, value in tensors.items():
        if key.startswith("optimizer/"):
            _, idx, name = key.split("/", 2)
            state[int(idx)][name] = value
    for idx, entry in doc["scalars"].items():
        state[int(idx)].update(entry)
    return {"state": state, "param_groups": doc["param_groups"]}


def rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    tensors = {"rng/torch": torch.get_rng_state(), "rng/numpy": torch.from_numpy(np.asarray(np_state[1], dtype=np.uint32).astype(np.int64))}
    doc = {"numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
           "python": [py_version, list(py_internal), py_gauss]}
    return tensors, doc


def set_rng_state(tensors: dict[str, torch.Tensor], doc: dict) -> None:
    torch.set_rng_state(tensors["rng/torch"])
    name, pos, has_gauss, cached = doc["numpy"]
    np.random.set_state((name, tensors["rng/numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = doc["python"]
    random.setstate((version, tuple(internal), gauss))


# --- training-state generations -----------------------------------------------------------------
@dataclass
class TrainingState:
    """What a generation holds, read back and verified."""

    path: Path
    step: int
    pieces: dict[str, torch.Tensor]
    optimizer: dict
    scheduler: dict
    progress: dict
    history: list[dict]
    best: dict | None
    rng_tensors: dict[str, torch.Tensor] = field(repr=False, default_factory=dict)
    rng_doc: dict = field(repr=False, default_factory=dict)
    skipped: list[dict] = field(default_factory=list)  # newer generations found damaged

    def restore_rng(self) -> None:
        set_rng_state(self.rng_tensors, self.rng_doc)


def save_training_state(checkpoints: Path, *, step: int, pieces: dict[str, torch.Tensor], optimizer, scheduler, progress: dict,
                        history: list[dict], best: dict | None, keep: int = KEEP_GENERATIONS) -> Path:
    """Write generation ``step`` atomically (checksums last), then drop generations beyond ``keep``."""
    checkpoints.mkdir(parents=True, exist_ok=True)
    final = checkpoints / f"step-{step:06d}"
    tmp = Path(tempfile.mkdtemp(dir=checkpoints, prefix=".tmp-"))
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in pieces.items()}, str(tmp / "pieces.safetensors"))
        kill_point("checkpoint-file")
        opt_tensors, opt_doc = _split_optimizer(optimizer.state_dict())
        rng_tensors, rng_doc = rng_state()
        save_file({**opt_tensors, **rng_tensors}, str(tmp / "optimizer.safetensors"))
        kill_point("checkpoint-file")
        write_document(tmp / "state.json", "training_state", {"step": step, "optimizer": opt_doc, "scheduler": scheduler.state_dict(), "rng": rng_doc,
                                        "progress": progress, "history": history, "best": best})
        kill_point("checkpoint-file")
        write_json(tmp / CHECKSUMS, {name: _sha256(tmp / name) for name in FILES})
        _plain_mode(tmp, directory=True)
        replace_dir(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    kill_point("checkpoint-renamed")
    for old in generations(checkpoints)[keep:]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def generations(checkpoints: Path) -> list[Path]:
    """Generation folders, newest first."""
    if not checkpoints.is_dir():
        return []
    found = []
    for p in checkpoints.iterdir():
        if p.is_dir() and p.name.startswith("step-") and p.name[5:].isdigit():
            found.append(p)
    return sorted(found, key=lambda p: int(p.name[5:]), reverse=True)


# What a finished run's end measures need of its last generation: its slices, not the optimizer
# state a resume needs (scripts/study-state carries a finished run's generation without it).
FINAL_FILES = ("pieces.safetensors", "state.json")


def damage(path: Path, files: tuple[str, ...] = FILES) -> str | None:
    """Why generation ``path`` cannot be trusted, or ``None`` when each of ``files`` matches its checksum."""
    try:
        sums = json.loads((path / CHECKSUMS).read_text())
    except FileNotFoundError:
        return f"{CHECKSUMS} is missing"
    except (OSError, ValueError):
        return f"{CHECKSUMS} is unreadable"
    for name in files:
        f = path / name
        if not f.is_file():
            return f"{name} is missing"
        if sums.get(name) != _sha256(f):
            return f"{name} does not match its checksum"
    return None


def load_training_state(checkpoints: Path) -> TrainingState | None:
    """The newest intact generation (``None`` if there is none at all).

    Damaged newer generations are skipped and listed in ``skipped`` (the caller tells the user);
    if generations exist but none is intact, that is an error rather than a silent restart.
    """
    skipped = []
    gens = generations(checkpoints)
    for path in gens:
        why = damage(path)
        if why is not None:
            skipped.append({"step": int(path.name[5:]), "why": why})
            continue
        tensors = load_file(str(path / "optimizer.safetensors"))
        doc = read_document(path / "state.json", kind="training_state")
        return TrainingState(
            path=path, step=int(doc["step"]), pieces=load_file(str(path / "pieces.safetensors")),
            optimizer=_join_optimizer(tensors, doc["optimizer"]), scheduler=doc["scheduler"], progress=doc["progress"],
            history=doc["history"], best=doc["best"], rng_tensors={k: v for k, v in tensors.items() if k.startswith("rng/")},
            rng_doc=doc["rng"], skipped=skipped,
        )
    if gens:
        listed = "; ".join(f"step {s['step']}: {s['why']}" for s in skipped)
        raise HeadsurgeonError(f"no checkpoint in {checkpoints} is intact ({listed}); delete {checkpoints} to train this run "
                               "again from the start, or choose a new --out")
    return None


def final_pieces_generation(checkpoints: Path, step: int) -> Path | None:
    """The generation of ``step`` if its slices are intact (optimizer state not needed), else ``None``.

    A finished run carried without ``models/`` is measured from these slices; resuming training
    needs the whole generation (``load_training_state``)."""
    path = checkpoints / f"step-{step:06d}"
    return path if path.is_dir() and damage(path, FINAL_FILES) is None else None


def load_final_pieces(checkpoints: Path, step: int) -> dict[str, torch.Tensor] | None:
    """The trained slices saved at ``step`` (see ``final_pieces_generation``), or ``None``."""
    path = final_pieces_generation(checkpoints, step)
    return None if path is None else load_file(str(path / "pieces.safetensors"))


def tell(message: str) -> None:
    """A notice for the user on stderr (resume decisions they should know about)."""
    print(f"note: {message}", file=sys.stderr, flush=True)


# --- full models ------------------------------------------------------------------------------
RECORD = "headsurgeon-surgery.json"


def save_model(model, tokenizer, state_dict: dict[str, torch.Tensor], target: Path, record: dict, *, same_as: Path | None = None) -> Path:
    """Write a plain ``save_pretrained`` folder (merged weights) atomically, with a record beside it.

    ``same_as``: a model folder already holding these very weights; its files are hard-linked
    instead of written again (one copy on disk), only the record is new.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".tmp-{target.name}-"))
    try:
        if same_as is not None and same_as.is_dir():
            for f in same_as.iterdir():
                if f.is_file() and f.name != RECORD:
                    try:
                        os.link(f, tmp / f.name)
                    except OSError:  # a file system without hard links: copy
                        shutil.copy2(f, tmp / f.name)
        else:
            from headsurgeon.models.loading import _transformers_progress

            with _transformers_progress(False):  # one "Writing model shards" bar per checkpoint is noise
                model.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp)
        kill_point("model-written")
        write_document(tmp / RECORD, "model_record", record)
        _plain_mode(tmp, directory=True)
        replace_dir(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
