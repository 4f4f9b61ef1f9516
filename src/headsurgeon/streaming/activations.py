"""The residual stream of every prompt batch between two blocks, in host memory or on disk.

The streamed path runs all prompts through block ``l`` before block ``l + 1`` is read, so the
hidden states of every batch must wait somewhere. They stay in host memory (never on the
accelerator, which holds the block) up to ``budget_bytes``; past it, each further batch is
written to its own safetensors file in a private temporary folder and read back when its turn
comes. Safetensors, not pickle: nothing read back can execute code.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

#: Default host-memory budget for held hidden states (bytes).
DEFAULT_BUDGET = 1 << 30


class ActivationStore:
    """``put(key, tensor)`` / ``get(key)`` for one tensor per batch; spills to disk past the budget."""

    def __init__(self, budget_bytes: int = DEFAULT_BUDGET, *, spill_dir: str | Path | None = None):
        self.budget = int(budget_bytes)
        self._parent = None if spill_dir is None else Path(spill_dir)
        self._memory: dict[int, torch.Tensor] = {}
        self._disk: dict[int, Path] = {}
        self._dir: Path | None = None
        self.peak_bytes = 0  # largest number of bytes held in host memory at once
        self.spilled_bytes = 0  # bytes written to disk over the whole run

    @property
    def held_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._memory.values())

    def put(self, key: int, tensor: torch.Tensor) -> None:
        tensor = tensor.detach().to("cpu").contiguous()
        self._drop(key)
        size = tensor.numel() * tensor.element_size()
        if self.held_bytes + size <= self.budget:
            self._memory[key] = tensor
            self.peak_bytes = max(self.peak_bytes, self.held_bytes)
            return
        if self._dir is None:
            if self._parent is not None:
                self._parent.mkdir(parents=True, exist_ok=True)
            self._dir = Path(tempfile.mkdtemp(prefix="headsurgeon-activations-", dir=self._parent))
        path = self._dir / f"batch-{key}.safetensors"
        save_file({"hidden": tensor}, str(path))
        self._disk[key] = path
        self.spilled_bytes += size

    def get(self, key: int) -> torch.Tensor:
        if key in self._memory:
            return self._memory[key]
        return load_file(str(self._disk[key]))["hidden"]

    def _drop(self, key: int) -> None:
        self._memory.pop(key, None)
        path = self._disk.pop(key, None)
        if path is not None:
            path.unlink(missing_ok=True)

    def close(self) -> None:
        """Forget everything and delete the spill folder."""
        self._memory.clear()
        self._disk.clear()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> ActivationStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
