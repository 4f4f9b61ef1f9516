"""The extreme-token reductions of a model streamed block by block (see :mod:`headsurgeon.streaming`).

The same :class:`~.probe.BatchProbe` hooks as the in-memory pass, installed for one block at a
time around each block call: attention received per key, value-state norms and the residual
stream entering block 0 and leaving every block. No logits are computed (the output head is
never read), so there are no token losses and no interventions on this path.
"""

from __future__ import annotations

from headsurgeon.prompts.encoding import EncodedPrompt, TokenBatch, batches
from headsurgeon.streaming import DEFAULT_BUDGET, BlockStreamer, StreamedModel, StreamStats

from .probe import BatchProbe, PromptProbe


def measure_prompts_streamed(
    streamed: StreamedModel,
    encoded: list[EncodedPrompt],
    *,
    values: bool,
    residual: bool,
    top_k: int,
    batch_size: int = 4,
    activation_budget: int = DEFAULT_BUDGET,
    progress: bool = True,
) -> tuple[list[PromptProbe], StreamStats]:
    """:class:`PromptProbe` for every prompt, in input order, like :func:`~.measure.measure_prompts`."""
    todo = list(batches(encoded, batch_size=batch_size, pad_id=streamed.tokenizer.pad_token_id))
    probes = {id(b): BatchProbe(streamed.adapter, b.lengths, values=values, residual=residual, top_k=top_k) for b in todo}

    def observe(layer: int, batch: TokenBatch):
        return probes[id(batch)].attach(layers=[layer])

    stats = BlockStreamer(streamed, todo, activation_budget=activation_budget).run(observe, progress=progress, desc="measuring (streamed)")
    out: list[PromptProbe | None] = [None] * len(encoded)
    for batch in todo:
        probe = probes[id(batch)]
        probe.check_complete()
        for row, i in enumerate(batch.indices):
            out[i] = probe.prompt(row)
    return out, stats
