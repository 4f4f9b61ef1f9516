"""``diagnose``: classify every attention head of a model over a prompt set."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.models import LoadedModel
from headsurgeon.models.placement import Placement
from headsurgeon.options import check_value
from headsurgeon.prompts import Prompt, builtin_prompts, read_prompt_file
from headsurgeon.prompts.encoding import BOS_MODES, EncodedPrompt, encode_prompts, first_token
from headsurgeon.streaming import DEFAULT_BUDGET, StreamedModel
from headsurgeon.streaming.choice import check_streamed_fits, decide_streaming, open_for_run, streamed_estimate

from .alibi import alibi_analysis
from .classes import COLLAPSED, Thresholds
from .collect import collect_head_stats
from .result import Diagnosis
from .streamed import collect_head_stats_streamed


def resolve_prompts(prompts: list[str] | list[Prompt] | None, prompt_file: str | Path | None) -> tuple[list[Prompt], str]:
    """The prompts to use and a label for where they came from."""
    if prompt_file is not None and prompts is not None:
        raise HeadsurgeonError("give either prompts or a prompt file, not both")
    if prompt_file is not None:
        return read_prompt_file(prompt_file), str(prompt_file)
    if prompts is None:
        return builtin_prompts(), "builtin"
    if not prompts:
        raise HeadsurgeonError("the prompt list is empty; pass at least one prompt")
    items = [p if isinstance(p, Prompt) else Prompt(f"prompt-{i}", "user", str(p)) for i, p in enumerate(prompts)]
    return items, "user"


def diagnose(
    model: str | LoadedModel | None = None,
    *,
    prompts: list[str] | list[Prompt] | None = None,
    prompt_file: str | Path | None = None,
    thresholds: Thresholds | None = None,
    include_first_query: bool = False,
    bos: str = "auto",
    max_length: int = 512,
    batch_size: int = 4,
    stream: bool | str = "auto",
    activation_budget: int = DEFAULT_BUDGET,
    placement: Placement | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
    dtype: str = "fp32",
    device: str = "cpu",
) -> Diagnosis:
    """Measure BOS mass, entropy and local mass of every head and classify it.

    Use BOS mass to find collapsed heads (healthy <= 0.5 < BOS-sink <= 0.95 < DEAD), entropy to
    find heads that are not collapsed but attend to a single token (low-entropy), and local mass
    to tell previous-token style heads from broad ones. ``model`` is a hub id, a folder, a
    ``.gguf`` file, ``None`` for the default SmolLM2-135M, an already loaded model, or a
    :class:`~headsurgeon.streaming.StreamedModel` (``open_streamed(spec, device=...)``).
    ``include_first_query`` puts query position 0 (always fully on itself) back into the
    means, as the paper did. With ``out_dir`` the JSON and figures are written there.
    ``dtype`` (``fp32``, ``bf16``, ``fp16``) and ``device`` (``cpu``, ``cuda[:N]``, ``mps``,
    ``auto`` for several GPUs) say how a model given by name is loaded.

    ``stream=True`` runs the block-streamed path (:mod:`headsurgeon.streaming`): the model's
    skeleton without weights, each block read from the safetensors shards, every prompt run
    through it, the block freed; peak memory one block plus activations (held hidden states
    above ``activation_budget`` bytes spill to disk). The numbers equal the in-memory path's.
    ``"auto"`` (default) streams when the in-memory estimate does not fit in free memory;
    ``False`` never streams (and fails with a one-line error naming ``--stream`` if the
    weights cannot fit). ``placement`` spreads an in-memory model over devices (accelerate's
    ``device_map``/``max_memory``/offload; see :mod:`headsurgeon.models.placement`).
    """
    thresholds = thresholds or Thresholds()
    check_value("batch_size", batch_size, integer=True, min=1, hint="e.g. --batch-size 4")
    check_value("max_length", max_length, optional=True, integer=True, min=2, hint="e.g. --max-length 512")
    check_value("bos", bos, choices=BOS_MODES)  # before the model loads
    if out_dir is not None:
        from headsurgeon.io import ensure_output_dir

        ensure_output_dir(out_dir)  # fail before the slow part
    items, source = resolve_prompts(prompts, prompt_file)
    use_stream = decide_streaming(model, stream, dtype=dtype, device=device, placement=placement, prompts=len(items),
                                  tokens=max_length or 512, batch_size=batch_size)
    loaded = open_for_run(model, use_stream, dtype=dtype, device=device, placement=placement, progress=progress)
    limit = loaded.adapter.max_positions
    if limit is not None and max_length is not None:
        max_length = min(max_length, limit)
    encoded = encode_prompts(loaded.tokenizer, items, bos=bos, max_length=max_length)
    diag = diagnose_encoded(
        loaded, encoded, thresholds=thresholds, include_first_query=include_first_query, bos=bos,
        prompt_source=source, max_length=max_length, batch_size=batch_size, activation_budget=activation_budget,
        progress=progress,
    )
    if out_dir is not None:
        from .outputs import write_diagnosis_outputs

        write_diagnosis_outputs(diag, out_dir)
    return diag


def layer_info(adapter, bos_rows: np.ndarray) -> dict:
    """Per layer: its type (``global``, or ``local`` with its window) and the query rows its BOS
    means counted (summed over prompts)."""
    windows = [adapter.attention_window(l) for l in range(adapter.num_layers)]
    return {
        "type": ["global" if w is None else "local" for w in windows],
        "window": windows,
        "bos_rows": bos_rows.sum(0).astype(int).tolist(),
    }


def diagnose_encoded(
    loaded: LoadedModel | StreamedModel,
    encoded: list[EncodedPrompt],
    *,
    thresholds: Thresholds | None = None,
    include_first_query: bool = False,
    bos: str = "auto",
    prompt_source: str = "builtin",
    max_length: int | None = 512,
    batch_size: int = 4,
    activation_budget: int = DEFAULT_BUDGET,
    progress: bool = False,
) -> Diagnosis:
    """Diagnose already-encoded prompts (used by :func:`diagnose` and by re-diagnosis during training).

    ``loaded`` is a model in memory or a :class:`~headsurgeon.streaming.StreamedModel` (block-streamed).
    """
    thresholds = thresholds or Thresholds()
    start = time.perf_counter()
    streaming = None
    if isinstance(loaded, StreamedModel):
        tokens = max(e.length for e in encoded)
        estimate = streamed_estimate(loaded, prompts=len(encoded), tokens=tokens, batch_size=batch_size,
                                     activation_budget=activation_budget)
        check_streamed_fits(estimate, loaded.loaded.name)
        per_prompt, stats = collect_head_stats_streamed(
            loaded, encoded, batch_size=batch_size, include_first_query=include_first_query,
            activation_budget=activation_budget, progress=progress,
        )
        streaming = {**stats.to_dict(), "activation_budget": activation_budget, "estimated_bytes": estimate.total}
    else:
        per_prompt = collect_head_stats(
            loaded, encoded, batch_size=batch_size, include_first_query=include_first_query, progress=progress
        )
    bos_rows = per_prompt.pop("bos_rows")
    diag = Diagnosis(
        model=loaded.describe(),
        settings={
            "thresholds": thresholds.to_dict(),
            "include_first_query": include_first_query,
            "bos": bos,
            "prompt_source": prompt_source,
            "max_length": max_length,
            "batch_size": batch_size,
            "dtype": str(loaded.dtype).removeprefix("torch."),
            "device": str(loaded.device),
            "execution": "streamed" if streaming is not None else "in-memory",
            "streaming": streaming,
            "placement": getattr(loaded, "placement", None),
        },
        prompts=[
            {"name": e.prompt.name, "domain": e.prompt.domain, "tokens": e.length, "first_token": first_token(loaded.tokenizer, e)}
            for e in encoded
        ],
        per_prompt=per_prompt,
        elapsed_seconds=time.perf_counter() - start,
        layers=layer_info(loaded.adapter, bos_rows),
    )
    sinks = loaded.adapter.sink_logits()
    if sinks is not None:
        diag.sinks = {"logits": np.round(sinks.numpy().astype(float), 6).tolist()}
    slopes = loaded.adapter.alibi_slopes()
    if slopes is not None:
        diag.alibi = alibi_analysis(slopes.numpy(), diag.bos_mass, np.isin(diag.classes, COLLAPSED))
    return diag
