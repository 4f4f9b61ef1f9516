"""Per-head statistics of a model streamed block by block (see :mod:`headsurgeon.streaming`).

The statistics are the in-memory path's own: the measurement engine
(:func:`~headsurgeon.capture.measure_attention`, opened for the one layer being run) computes
them inside the block's attention call, and :func:`~.collect.layer_recorder` writes them where
the in-memory path does. Only the order of the loops differs (block-outer, batch-inner), so the
numbers are the same. The block loop itself knows nothing of how statistics are computed: it
opens the measuring context around each block call.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from headsurgeon.capture import check_all_layers, measure_attention
from headsurgeon.prompts.encoding import EncodedPrompt, TokenBatch, batches
from headsurgeon.streaming import DEFAULT_BUDGET, BlockStreamer, StreamedModel, StreamStats

from .collect import empty_stats, layer_recorder


def collect_head_stats_streamed(
    streamed: StreamedModel,
    encoded: list[EncodedPrompt],
    *,
    batch_size: int = 4,
    include_first_query: bool = False,
    activation_budget: int = DEFAULT_BUDGET,
    progress: bool = True,
    route: str = "auto",
    chunk: int | None = None,
) -> tuple[dict[str, np.ndarray], StreamStats]:
    """``{metric: [prompts, layers, heads]}`` like :func:`~.collect.collect_head_stats`, plus the run's cost."""
    adapter = streamed.adapter
    out = empty_stats(adapter, len(encoded))
    todo = list(batches(encoded, batch_size=batch_size, pad_id=streamed.tokenizer.pad_token_id))
    recorders = {id(b): layer_recorder(out, b.indices, include_first_query=include_first_query, adapter=adapter) for b in todo}

    @contextmanager
    def observe(layer: int, batch: TokenBatch):
        lengths = batch.lengths.to(streamed.device)
        with measure_attention(adapter, lengths, recorders[id(batch)], layers=[layer], route=route, chunk=chunk) as session:
            yield
        check_all_layers(session, [layer])  # the block's attention reached the engine

    stats = BlockStreamer(streamed, todo, activation_budget=activation_budget).run(observe, progress=progress, desc="diagnosing (streamed)")
    return out, stats
