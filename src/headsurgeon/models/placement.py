"""Where a model's weights go: one device, or spread by accelerate's big-model inference.

A :class:`Placement` is what ``--device-map``, ``--max-memory`` and ``--offload-folder`` say:
``device_map="auto"`` lets accelerate fill the GPUs in order, then CPU memory, then disk (each
capped by ``max_memory``); a dict pins modules to devices by name. Accelerate's hooks move
activations between devices during the forward, so every measurement hook still sees the
same tensors. Without a placement the whole model goes to one device (``load_model``'s
``device``) and its weights are checked against free memory first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from headsurgeon.errors import HeadsurgeonError

_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([KMGT]i?B)?\s*$", re.IGNORECASE)
_UNITS = {"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


@dataclass(frozen=True)
class Placement:
    """``device_map`` (``"auto"``, ``"cpu"``, ``"cuda:0"`` or ``{module: device}``), per-device caps, offload folder."""

    device_map: str | dict = "auto"
    max_memory: dict = field(default_factory=dict)
    offload_folder: str | None = None

    def from_pretrained_kwargs(self) -> dict:
        kwargs: dict = {"device_map": self.device_map}
        if self.max_memory:
            kwargs["max_memory"] = dict(self.max_memory)
        if self.offload_folder is not None:
            Path(self.offload_folder).mkdir(parents=True, exist_ok=True)
            kwargs["offload_folder"] = str(self.offload_folder)
        return kwargs

    def to_dict(self) -> dict:
        return {"device_map": self.device_map, "max_memory": dict(self.max_memory), "offload_folder": self.offload_folder}


def parse_size(text: str, option: str) -> int:
    """``"1.5GiB"`` -> bytes (units KB/MB/GB/TB and KiB/MiB/GiB/TiB; bare numbers are bytes)."""
    m = _SIZE.match(str(text))
    if m is None:
        raise HeadsurgeonError(f"{option} '{text}' is not a size; write e.g. 512MiB or 2GB")
    return int(float(m.group(1)) * _UNITS.get((m.group(2) or "B").lower(), 1.0))


def parse_max_memory(text: str | None) -> dict:
    """``"0=20GiB,cpu=60GiB"`` -> ``{0: 21474836480, "cpu": 64424509440}`` (accelerate's keys: GPU
    indices as integers, ``"cpu"``, ``"disk"``, ``"mps"``)."""
    if not text:
        return {}
    out: dict = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or _SIZE.match(value) is None:
            raise HeadsurgeonError(f"--max-memory entry '{part.strip()}' is not DEVICE=SIZE; write e.g. 0=20GiB,cpu=60GiB")
        if not (key.isdigit() or key in ("cpu", "disk", "mps")):
            raise HeadsurgeonError(f"--max-memory device '{key}' is unknown; use a GPU index (0, 1, ...), cpu, mps or disk")
        out[int(key) if key.isdigit() else key] = parse_size(value, "--max-memory")
    return out


def placement_from_options(device_map: str | None, max_memory: str | None, offload_folder: str | Path | None) -> Placement | None:
    """The placement the CLI options describe (``None``: the whole model on one device)."""
    if device_map is None:
        if max_memory or offload_folder:
            raise HeadsurgeonError("--max-memory and --offload-folder only apply with --device-map; add --device-map auto")
        return None
    return Placement(device_map=device_map, max_memory=parse_max_memory(max_memory),
                     offload_folder=None if offload_folder is None else str(offload_folder))


def input_device(model: torch.nn.Module) -> torch.device:
    """Where a forward's inputs go: the token embedding's device (its execution device when
    accelerate has offloaded it, whose weights then sit on ``meta``)."""
    emb = model.get_input_embeddings()
    hook = getattr(emb, "_hf_hook", None)
    if hook is not None and getattr(hook, "execution_device", None) is not None:
        return torch.device(hook.execution_device)
    device = emb.weight.device
    return torch.device("cpu") if device.type == "meta" else device


def check_weights_fit(folder: Path, *, dtype: torch.dtype, device: str | torch.device) -> None:
    """Refuse, before loading, a local safetensors checkpoint whose weights cannot fit on ``device``."""
    from headsurgeon.streaming.model import has_safetensors
    from headsurgeon.streaming.shards import ShardReader

    from .memory import RUNTIME_BYTES, MemoryEstimate, available_memory, require_fits

    if not has_safetensors(folder):
        return
    try:
        numel = sum(ShardReader(folder).numels().values())
    except Exception:  # an unreadable checkpoint: let the loader report it in its own words
        return
    size = torch.finfo(dtype).bits // 8 if dtype.is_floating_point else 4
    estimate = MemoryEstimate(weights=numel * size, activations=0, statistics=0, runtime=RUNTIME_BYTES,
                              available=available_memory(device), streamed=False)
    require_fits(estimate, what="loading", model=folder.name)
