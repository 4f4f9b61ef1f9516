"""``diagnose``: classify every attention head of a model over a prompt set."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.models import LoadedModel, load_model
from headsurgeon.prompts import Prompt, builtin_prompts, read_prompt_file
from headsurgeon.prompts.encoding import EncodedPrompt, encode_prompts, first_token

from .alibi import alibi_analysis
from .classes import COLLAPSED, Thresholds
from .collect import collect_head_stats
from .result import Diagnosis


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
    out_dir: str | Path | None = None,
    progress: bool = True,
    dtype: str = "fp32",
    device: str = "cpu",
) -> Diagnosis:
    """Measure BOS mass, entropy and local mass of every head and classify it.

    Use BOS mass to find collapsed heads (healthy <= 0.5 < BOS-sink <= 0.95 < DEAD), entropy to
    find heads that are not collapsed but attend to a single token (low-entropy), and local mass
    to tell previous-token style heads from broad ones. ``model`` is a hub id, a folder, a
    ``.gguf`` file, ``None`` for the default SmolLM2-135M, or an already loaded model.
    ``include_first_query`` puts query position 0 (always fully on itself) back into the
    means, as the paper did. With ``out_dir`` the JSON and figures are written there.
    ``dtype`` (``fp32``, ``bf16``, ``fp16``) and ``device`` (``cpu``, ``cuda[:N]``, ``mps``,
    ``auto`` for several GPUs) say how a model given by name is loaded.
    """
    thresholds = thresholds or Thresholds()
    if batch_size < 1 or (max_length is not None and max_length < 2):
        raise HeadsurgeonError("--batch-size must be >= 1 and --max-length >= 2")
    if out_dir is not None:
        from headsurgeon.io import ensure_output_dir

        ensure_output_dir(out_dir)  # fail before the slow part
    items, source = resolve_prompts(prompts, prompt_file)
    loaded = model if isinstance(model, LoadedModel) else load_model(model, progress=progress, dtype=dtype, device=device)
    limit = loaded.adapter.max_positions
    if limit is not None and max_length is not None:
        max_length = min(max_length, limit)
    encoded = encode_prompts(loaded.tokenizer, items, bos=bos, max_length=max_length)
    diag = diagnose_encoded(
        loaded, encoded, thresholds=thresholds, include_first_query=include_first_query, bos=bos,
        prompt_source=source, max_length=max_length, batch_size=batch_size, progress=progress,
    )
    if out_dir is not None:
        from .outputs import write_diagnosis_outputs

        write_diagnosis_outputs(diag, out_dir)
    return diag


def diagnose_encoded(
    loaded: LoadedModel,
    encoded: list[EncodedPrompt],
    *,
    thresholds: Thresholds | None = None,
    include_first_query: bool = False,
    bos: str = "auto",
    prompt_source: str = "builtin",
    max_length: int | None = 512,
    batch_size: int = 4,
    progress: bool = False,
) -> Diagnosis:
    """Diagnose already-encoded prompts (used by :func:`diagnose` and by re-diagnosis during training)."""
    thresholds = thresholds or Thresholds()
    start = time.perf_counter()
    per_prompt = collect_head_stats(
        loaded, encoded, batch_size=batch_size, include_first_query=include_first_query, progress=progress
    )
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
        },
        prompts=[
            {"name": e.prompt.name, "domain": e.prompt.domain, "tokens": e.length, "first_token": first_token(loaded.tokenizer, e)}
            for e in encoded
        ],
        per_prompt=per_prompt,
        elapsed_seconds=time.perf_counter() - start,
    )
    slopes = loaded.adapter.alibi_slopes()
    if slopes is not None:
        diag.alibi = alibi_analysis(slopes.numpy(), diag.bos_mass, np.isin(diag.classes, COLLAPSED))
    return diag
