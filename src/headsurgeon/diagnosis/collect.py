"""Run prompts through a model and reduce attention to per-head statistics, layer by layer."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from headsurgeon.capture import LayerStats, check_all_layers, measure_attention
from headsurgeon.models import LoadedModel
from headsurgeon.prompts.encoding import EncodedPrompt, batches

from .metrics import METRICS, SINK_METRIC, layer_head_stats


def metrics_of(adapter) -> tuple[str, ...]:
    """The per-head metrics measured for ``adapter``'s family (``sink_mass`` with learned sinks)."""
    return METRICS + ((SINK_METRIC,) if adapter.sink_column else ())


def empty_stats(adapter, prompts: int) -> dict[str, np.ndarray]:
    """NaN-filled ``{metric: [prompts, layers, heads]}`` arrays (NaN: not measured yet), and
    ``bos_rows`` ``[prompts, layers]`` (query rows counted in each BOS mean)."""
    out = {m: np.full((prompts, adapter.num_layers, adapter.num_heads), np.nan) for m in metrics_of(adapter)}
    out["bos_rows"] = np.zeros((prompts, adapter.num_layers))
    return out


def layer_recorder(out: dict[str, np.ndarray], indices: list[int], *, include_first_query: bool,
                   adapter) -> Callable[[LayerStats], None]:
    """The ``on_layer`` callback that writes one layer's statistics of one batch into ``out``.

    Shared by the in-memory and the block-streamed path (:mod:`.streamed`), so both reduce the
    engine's row statistics the same way (``adapter``: the layer's sliding window, the metrics).
    """
    metrics = metrics_of(adapter)

    def on_layer(att: LayerStats) -> None:
        stats = layer_head_stats(att, include_first_query=include_first_query, window=adapter.attention_window(att.layer))
        for m in metrics:
            out[m][indices, att.layer, :] = getattr(stats, m).cpu().numpy()
        out["bos_rows"][indices, att.layer] = stats.bos_rows.cpu().numpy()

    return on_layer


@torch.no_grad()
def collect_head_stats(
    loaded: LoadedModel,
    encoded: list[EncodedPrompt],
    *,
    batch_size: int = 4,
    include_first_query: bool = False,
    progress: bool = True,
    route: str = "auto",
    chunk: int | None = None,
) -> dict[str, np.ndarray]:
    """``{metric: [prompts, layers, heads]}`` for every prompt in ``encoded``, plus ``bos_rows``
    (``[prompts, layers]``: query rows counted in each BOS mean, fewer than the others on
    sliding-window layers) and, for families with a learned sink, ``sink_mass``.

    Each layer's statistics are computed inside its attention call by the measurement engine
    (:mod:`headsurgeon.capture.engine`): no T x T map is held, at any depth or length. Only the
    last position's logits are asked for (the full ``[batch, T, vocab]`` logits were the largest
    allocation of the pass: 805 MB for SmolLM2 at 8 x 512 tokens), and the pass ends as soon as
    the last layer's attention is measured (its MLP, the final norm and the head are not needed).
    ``route``/``chunk``: see :func:`headsurgeon.capture.measure_attention` (``"chunked"`` forces
    explicit scores in chunks of ``chunk`` query rows).
    """
    adapter, model = loaded.adapter, loaded.model
    P, L = len(encoded), adapter.num_layers
    out = empty_stats(adapter, P)
    device = loaded.device
    pad_id = loaded.tokenizer.pad_token_id
    extra = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
    bar = tqdm(total=P, desc="diagnosing", unit="prompt", disable=not progress, leave=False)
    was_training = model.training
    model.eval()
    try:
        for batch in batches(encoded, batch_size=batch_size, pad_id=pad_id):
            lengths = batch.lengths.to(device)
            on_layer = layer_recorder(out, batch.indices, include_first_query=include_first_query, adapter=adapter)
            with measure_attention(adapter, lengths, on_layer, route=route, chunk=chunk, stop_when_done=True) as session:
                model(input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device), use_cache=False, **extra)
            check_all_layers(session, range(L))
            bar.update(len(batch.indices))
    finally:
        bar.close()
        model.train(was_training)
    return out
