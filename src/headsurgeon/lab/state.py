"""A run's resumable training state, without pickle: weights and AdamW moments in safetensors,
the step and the optimiser's hyper-parameters in JSON.

Written after every checkpoint (into a temporary folder renamed into place, so a kill leaves
either the old state or the new one). Batch order is a pure function of (seed, epoch, batch
index) (:mod:`headsurgeon.corpus.batches`) and the models have no dropout, so a resumed run
continues exactly where the uninterrupted one would have been.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from headsurgeon.errors import HeadsurgeonError


def save_state(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, *, step: int, extra: dict) -> None:
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    weights = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    # tied embeddings appear under two names sharing storage; keep one copy, load_state_dict re-ties
    unique, seen = {}, set()
    for k, v in weights.items():
        if v.data_ptr() not in seen:
            seen.add(v.data_ptr())
            unique[k] = v
    save_file(unique, str(tmp / "model.safetensors"))
    sd = optimizer.state_dict()
    moments = {f"{i}.{name}": t.contiguous() for i, st in sd["state"].items() for name, t in st.items()}
    save_file(moments, str(tmp / "optimizer.safetensors"))
    (tmp / "state.json").write_text(json.dumps({"step": step, "param_groups": sd["param_groups"], **extra}))
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)


def load_state(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Restore ``model`` and ``optimizer`` in place; return the JSON part (``step`` and extras)."""
    try:
        meta = json.loads((folder / "state.json").read_text())
        weights = load_file(str(folder / "model.safetensors"))
        moments = load_file(str(folder / "optimizer.safetensors"))
    except (OSError, ValueError) as exc:
        raise HeadsurgeonError(f"training state in {folder} is unreadable ({exc}); delete that folder to restart the run") from None
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if unexpected or any("lm_head" not in k for k in missing):
        raise HeadsurgeonError(f"training state in {folder} does not fit this model; delete it to restart the run")
    model.tie_weights()
    state: dict[int, dict] = {}
    for key, t in moments.items():
        i, name = key.split(".", 1)
        state.setdefault(int(i), {})[name] = t
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return meta
