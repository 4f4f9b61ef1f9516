"""Atomic checkpoints: small resumable training states and full ``save_pretrained`` models.

A training state (``checkpoints/step-NNNNNN/``) holds only what surgery changes: the slice
pieces (safetensors), the optimizer and scheduler state, RNG states and the progress counters,
so a killed run resumes exactly. A model (``models/<tag>/``) is a merged, plain
``save_pretrained`` folder (safetensors + tokenizer + ``headsurgeon-surgery.json``) that
``transformers`` loads without headsurgeon. Every directory is written under a temporary name
and renamed into place; ``checkpoints/latest.json`` is replaced atomically last, so a crash at
any point leaves the previous checkpoint valid.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from headsurgeon.io import atomic_write_text, write_json


def _replace_dir(tmp: Path, final: Path) -> None:
    if final.exists():
        old = final.with_name(f".old-{final.name}-{os.getpid()}")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def save_training_state(run_dir: Path, *, step: int, pieces: dict[str, torch.Tensor], optimizer, scheduler, progress: dict, keep: int = 1) -> Path:
    ckpt_root = run_dir / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / f"step-{step:06d}"
    tmp = Path(tempfile.mkdtemp(dir=ckpt_root, prefix=".tmp-"))
    save_file({k: v.detach().contiguous().cpu() for k, v in pieces.items()}, str(tmp / "pieces.safetensors"))
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state()}, tmp / "optimizer.pt")
    write_json(tmp / "progress.json", progress)
    _replace_dir(tmp, final)
    atomic_write_text(ckpt_root / "latest.json", json.dumps({"step": step, "path": final.name}))
    older = sorted(p for p in ckpt_root.glob("step-*") if p != final)
    for p in older[: max(0, len(older) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    return final


def latest_training_state(run_dir: Path) -> Path | None:
    pointer = run_dir / "checkpoints" / "latest.json"
    if not pointer.is_file():
        return None
    path = run_dir / "checkpoints" / json.loads(pointer.read_text())["path"]
    return path if path.is_dir() else None


def load_training_state(path: Path) -> tuple[dict[str, torch.Tensor], dict, dict]:
    pieces = load_file(str(path / "pieces.safetensors"))
    extra = torch.load(path / "optimizer.pt", weights_only=False)
    progress = json.loads((path / "progress.json").read_text())
    return pieces, extra, progress


def save_model(model, tokenizer, state_dict: dict[str, torch.Tensor], target: Path, record: dict) -> Path:
    """Write a plain ``save_pretrained`` folder (merged weights) atomically, with a record beside it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".tmp-{target.name}-"))
    try:
        from headsurgeon.models.loading import _transformers_progress

        with _transformers_progress(False):  # one "Writing model shards" bar per checkpoint is noise
            model.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        write_json(tmp / "headsurgeon-surgery.json", record)
        _replace_dir(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
