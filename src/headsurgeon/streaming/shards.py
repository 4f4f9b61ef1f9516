"""Per-tensor reads from a folder of (sharded) safetensors files.

The streamed path never loads a checkpoint whole: it asks for the tensors of one block at a
time. ``model.safetensors.index.json`` (written by ``save_pretrained`` for sharded checkpoints)
maps every tensor name to its shard; a single ``model.safetensors`` is its own index.
``safe_open`` memory-maps a shard and copies out only the tensors (or rows) asked for, so a
read costs the bytes of those tensors, not of the shard. Pickled ``.bin`` checkpoints are
refused: nothing from a file is ever unpickled.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import torch
from safetensors import safe_open

from headsurgeon.errors import HeadsurgeonError

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"


class ShardReader:
    """Where each tensor of a checkpoint folder lives, and reads of exactly the tensors asked for.

    ``prefix`` is the model's ``base_model_prefix`` (``transformer``, ``model``, ...): some
    checkpoints (the original GPT-2 among them) store names without it, so a name missing from
    the index is looked up again without its prefix.
    """

    def __init__(self, folder: str | Path, *, prefix: str = ""):
        self.folder = Path(folder)
        self.prefix = prefix
        index = self.folder / INDEX_NAME
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            except (OSError, ValueError, KeyError, TypeError):
                raise HeadsurgeonError(f"{index} is not a safetensors shard index; rewrite the checkpoint with save_pretrained") from None
        elif (self.folder / SINGLE_NAME).is_file():
            try:
                with safe_open(self.folder / SINGLE_NAME, framework="pt") as f:
                    weight_map = {name: SINGLE_NAME for name in f.keys()}
            except Exception as exc:  # safetensors raises its own error types for bad headers
                raise HeadsurgeonError(f"{self.folder / SINGLE_NAME} is not a readable safetensors file ({exc}); download or re-save it") from None
        else:
            raise HeadsurgeonError(
                f"{self.folder} holds no safetensors weights ({INDEX_NAME} or {SINGLE_NAME}); the streamed path reads "
                "safetensors only: re-save the model with save_pretrained(safe_serialization=True)"
            )
        missing = sorted({f for f in weight_map.values() if not (self.folder / f).is_file()})
        if missing:
            raise HeadsurgeonError(f"shard {missing[0]} named by {self.folder / INDEX_NAME} is missing; download the checkpoint again")
        self.weight_map: dict[str, str] = dict(weight_map)
        self.bytes_read = 0
        self._numels: dict[str, int] | None = None

    def stored_name(self, name: str) -> str | None:
        """The name under which ``name`` is stored (itself, or without the base-model prefix)."""
        if name in self.weight_map:
            return name
        if self.prefix and name.startswith(self.prefix + "."):
            short = name[len(self.prefix) + 1 :]
            if short in self.weight_map:
                return short
        return None

    def has(self, name: str) -> bool:
        return self.stored_name(name) is not None

    def numels(self) -> dict[str, int]:
        """Element count of every stored tensor, from the shard headers (no tensor data read)."""
        if self._numels is None:
            self._numels = {}
            for shard in sorted(set(self.weight_map.values())):
                with safe_open(self.folder / shard, framework="pt") as f:
                    for key in f.keys():
                        self._numels[key] = _numel(f.get_slice(key).get_shape())
        return self._numels

    def numel(self, name: str) -> int:
        stored = self.stored_name(name)
        return 0 if stored is None else self.numels().get(stored, 0)

    def read(self, names: list[str], *, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
        """``{name: tensor}`` for ``names``, each shard opened once; cast to ``dtype`` if given."""
        by_shard: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for name in names:
            stored = self.stored_name(name)
            if stored is None:
                raise HeadsurgeonError(
                    f"tensor {name} is not in the checkpoint at {self.folder}; the streamed path needs a checkpoint "
                    "written by save_pretrained for this architecture"
                )
            by_shard[self.weight_map[stored]].append((name, stored))
        out: dict[str, torch.Tensor] = {}
        for shard, pairs in by_shard.items():
            with safe_open(self.folder / shard, framework="pt") as f:
                for name, stored in pairs:
                    tensor = f.get_tensor(stored)
                    self.bytes_read += tensor.numel() * tensor.element_size()
                    out[name] = tensor if dtype is None or not tensor.is_floating_point() else tensor.to(dtype)
        return out

    def read_rows(self, name: str, rows: list[int], *, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Rows ``rows`` of the 2-D tensor ``name``, in that order (one slice read per row).

        Used for the token embedding: a prompt set uses a few hundred of BLOOM's 250,880 rows,
        so reading only those keeps a 2 GB matrix out of memory.
        """
        stored = self.stored_name(name)
        if stored is None:
            raise HeadsurgeonError(f"tensor {name} is not in the checkpoint at {self.folder}; re-save the model with save_pretrained")
        with safe_open(self.folder / self.weight_map[stored], framework="pt") as f:
            sl = f.get_slice(stored)
            parts = [sl[r : r + 1] for r in rows]
        table = torch.cat(parts) if parts else torch.empty(0)
        self.bytes_read += table.numel() * table.element_size()
        return table if dtype is None else table.to(dtype)


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n

