"""Run prompt batches through a model one block at a time, each block's weights read once.

The loop is block-outer, batch-inner: block ``l`` is read from the shards onto the run device,
every batch's residual stream goes through it (the caller's ``observe(layer, batch)`` context is
open around each call, so hooks on the block's modules see exactly what they would in a full
forward), and the block goes back to the meta device before block ``l + 1`` is read. Peak
memory is one block, the stem, and the held activations (:class:`ActivationStore`).

How a block is called is not written here, and not in any family's code either: the model's
own forward is run with every block's ``forward`` replaced by a recorder, which notes the
arguments the model passes to block ``l`` (masks, ALiBi, rotary embeddings, position ids, in
whatever form the family uses, per layer where a family alternates layer types) and stops the
forward there. The stem (embedding, masks, rotary tables) is cheap, so it is re-run for every
(block, batch) pair rather than holding every batch's masks. The block is then called with the
recorded arguments and the held residual stream in place of the recorder's input, which is
exactly the call the full forward would make.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from headsurgeon.errors import CaptureError
from headsurgeon.prompts.encoding import TokenBatch

from .activations import DEFAULT_BUDGET, ActivationStore
from .model import StreamedModel, assign_parameter

Observer = Callable[[int, TokenBatch], AbstractContextManager]


class _Recorded(Exception):
    """Raised by the recorder of the wanted block to stop the model's forward."""

    def __init__(self, args: tuple, kwargs: dict):
        self.args, self.kwargs = args, kwargs


@dataclass
class StreamStats:
    """What one streamed run cost: bytes read, held and spilled, and the time per stage."""

    blocks: int = 0
    weight_bytes_read: int = 0
    block_bytes_max: int = 0
    activation_bytes_peak: int = 0
    activation_bytes_spilled: int = 0
    seconds_reading: float = 0.0
    seconds_computing: float = 0.0
    per_block_seconds: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items() if k != "per_block_seconds"}


def _to(obj, device: torch.device):
    """``obj`` with every tensor inside (tuples, lists, dicts) moved to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, tuple):
        return tuple(_to(o, device) for o in obj)
    if isinstance(obj, list):
        return [_to(o, device) for o in obj]
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    return obj


class BlockStreamer:
    """Streams the blocks of ``streamed`` through ``batches`` (see the module docstring)."""

    def __init__(self, streamed: StreamedModel, batches: list[TokenBatch], *, activation_budget: int = DEFAULT_BUDGET,
                 spill_dir=None):
        self.streamed, self.batches = streamed, batches
        self.adapter, self.model = streamed.adapter, streamed.model
        self.device = streamed.device
        self.store = ActivationStore(activation_budget, spill_dir=spill_dir)
        self.stats = StreamStats()
        self._lookup, self._table = self._compact_embedding()

    # ----- the stem: embedding rows the prompts use, and the model's own block arguments ----
    def _compact_embedding(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Only the embedding rows the batches use, and a vocabulary -> row lookup."""
        ids = torch.unique(torch.cat([b.input_ids.flatten() for b in self.batches]))
        start = time.perf_counter()
        table = self.streamed.reader.read_rows(self.streamed.embedding_name(), ids.tolist(), dtype=self.streamed.dtype)
        self.stats.seconds_reading += time.perf_counter() - start
        lookup = torch.full((int(ids.max()) + 1,), -1, dtype=torch.long)
        lookup[ids] = torch.arange(len(ids))
        return lookup, table

    @contextmanager
    def _stem_mode(self) -> Iterator[None]:
        """The embedding module holds the compact table (no padding row check) for the stem run."""
        emb = self.model.get_input_embeddings()
        old_weight, old_pad = emb.weight, getattr(emb, "padding_idx", None)
        emb._parameters["weight"] = nn.Parameter(self._table, requires_grad=False)
        if old_pad is not None:
            emb.padding_idx = None  # the compact table has no row at the original padding index
        try:
            yield
        finally:
            emb._parameters["weight"] = old_weight
            if old_pad is not None:
                emb.padding_idx = old_pad

    def block_inputs(self, batch: TokenBatch, layer: int) -> tuple[torch.Tensor, tuple, dict]:
        """``(residual stream entering block 0, other positional args, kwargs)`` of block ``layer``."""
        a = self.adapter
        recorders = []

        def recorder(target: int):
            def forward(*args, **kwargs):
                if target == layer:
                    raise _Recorded(args, kwargs)
                return args[0] if not a.block_returns_tuple else (args[0], None)

            return forward

        try:
            for l in range(layer + 1):
                block = a.block(l)
                block.forward = recorder(l)  # instance attribute: shadows the class's forward
                recorders.append(block)
            with self._stem_mode():
                self.model(input_ids=self._lookup[batch.input_ids], attention_mask=batch.attention_mask, use_cache=False)
        except _Recorded as rec:
            hidden = rec.args[0] if rec.args else rec.kwargs.pop("hidden_states")
            return hidden, tuple(rec.args[1:]), dict(rec.kwargs)
        finally:
            for block in recorders:
                del block.forward
        raise CaptureError(f"the model's forward never called block {layer}; its adapter's block_path does not match the model")

    # ----- blocks ----------------------------------------------------------------------------
    def _load_block(self, layer: int) -> nn.Module:
        names = self.streamed.block_parameter_names(layer)
        start = time.perf_counter()
        tensors = self.streamed.reader.read(names, dtype=self.streamed.dtype)
        for name, tensor in tensors.items():
            assign_parameter(self.model, name, tensor.to(self.device))
        self.stats.seconds_reading += time.perf_counter() - start
        size = sum(t.numel() * t.element_size() for t in tensors.values())
        self.stats.block_bytes_max = max(self.stats.block_bytes_max, size)
        return self.adapter.block(layer)

    def _free_block(self, layer: int) -> None:
        """Put meta tensors back in place of the block's parameters (buffers, e.g. rotary
        tables some families keep inside a block, stay: they were never read from the shards)."""
        for name in self.streamed.block_parameter_names(layer):
            param = self.model.get_parameter(name)
            assign_parameter(self.model, name, torch.empty_like(param, device="meta"))

    @torch.no_grad()
    def run(self, observe: Observer, *, progress: bool = False, desc: str = "streaming") -> StreamStats:
        """Every batch through every block, ``observe(layer, batch)`` open around each block call."""
        a = self.adapter
        bar = tqdm(total=a.num_layers, desc=desc, unit="block", disable=not progress, leave=False)
        try:
            for i, batch in enumerate(self.batches):
                hidden, _, _ = self.block_inputs(batch, 0)
                self.store.put(i, hidden)
            for layer in range(a.num_layers):
                begin = time.perf_counter()
                block = self._load_block(layer)
                compute = time.perf_counter()
                try:
                    for i, batch in enumerate(self.batches):
                        _, args, kwargs = self.block_inputs(batch, layer)
                        hidden = self.store.get(i).to(self.device)
                        with observe(layer, batch):
                            out = block(hidden, *_to(args, self.device), **_to(kwargs, self.device))
                        self.store.put(i, a.block_hidden(out))
                finally:
                    del block
                    self._free_block(layer)
                now = time.perf_counter()
                self.stats.seconds_computing += now - compute
                self.stats.per_block_seconds.append(now - begin)
                self.stats.blocks += 1
                bar.update(1)
        finally:
            bar.close()
            self.stats.weight_bytes_read = self.streamed.reader.bytes_read  # stem + embedding rows + blocks, as stored
            self.stats.activation_bytes_peak = self.store.peak_bytes
            self.stats.activation_bytes_spilled = self.store.spilled_bytes
            self.store.close()
        return self.stats

    def hidden_states(self) -> list[torch.Tensor]:
        """The residual stream after the last block, per batch (valid until :meth:`run` returns)."""
        return [self.store.get(i) for i in range(len(self.batches))]
