"""``run_extremes``: sinks, value drains, residual peaks, dormancy and interventions in one call."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.models import LoadedModel
from headsurgeon.models.adapters import HeadRef
from headsurgeon.models.placement import Placement
from headsurgeon.models.preflight import model_facts
from headsurgeon.options import check_value
from headsurgeon.prompts.encoding import encode_prompts, first_token
from headsurgeon.streaming import DEFAULT_BUDGET
from headsurgeon.streaming.choice import decide_streaming, open_for_run

from .analysis import GROUPS, PromptSummary, massive_dims, summarise_prompt
from .domains import build_domains
from .dormancy import pick_intervention_heads
from .effects import run_interventions
from .measure import measure_prompts
from .result import ExtremesResult
from .settings import PARTS, ExtremesSettings, normalise_parts
from .streamed import measure_prompts_streamed


def run_extremes(
    model: str | LoadedModel | None = None,
    *,
    domains: Sequence[str] | None = None,
    domain_files: Mapping[str, str | Path] | None = None,
    local_text: int = 4,
    what: Sequence[str] | str = PARTS,
    settings: ExtremesSettings | None = None,
    heads: Sequence[HeadRef] | None = None,
    bos: str = "auto",
    max_length: int = 128,
    batch_size: int = 4,
    stream: bool | str = "auto",
    activation_budget: int = DEFAULT_BUDGET,
    placement: Placement | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
    dtype: str = "fp32",
    device: str = "cpu",
) -> ExtremesResult:
    """Measure the extreme-token phenomena and active-dormant heads of ``model``.

    One forward pass per prompt batch records, per head and prompt, the attention every key
    position receives (-> sink tokens, BOS mass, sink share), the value-state norm of every
    token (-> drain) and the residual-stream norm and largest dimensions of every token (->
    peak, massive dimensions); per-domain means classify heads as always active, always
    dormant or domain-dependent. Interventions (zeroing a head; removing its attention to the
    sink tokens and position 0) then measure the loss change per domain.

    ``model``: hub id, folder, ``.gguf``, ``None`` (default SmolLM2-135M) or a loaded model.
    ``domains``: built-in domains (default all six: prose, code, multilingual, technical,
    math, repetitive); ``domain_files``: ``{name: prompt file}`` for your own domains;
    ``local_text``: extra chunks of locally installed real text for prose/technical/code (0 =
    built-in prompts only). ``what``: parts to run (see :data:`PARTS`; ``sinks`` always runs).
    ``heads``: heads to intervene on (default: picked from the dormancy classes, see
    :class:`ExtremesSettings`). With ``out_dir`` the JSON and figures are written there.
    ``dtype``/``device``: how a model given by name is loaded (see :func:`headsurgeon.load_model`).

    ``stream=True`` measures block by block from the safetensors shards (peak memory one block
    plus activations, see :mod:`headsurgeon.streaming`) with the same numbers; it computes no
    logits, so ``interventions`` (which re-run the whole model per head) are not available
    there. ``"auto"`` streams when the model will not fit and no interventions are asked for.
    ``placement``: accelerate's ``device_map``/``max_memory``/offload for the in-memory path.
    """
    parts = normalise_parts(what)
    settings = settings or ExtremesSettings()
    check_value("batch_size", batch_size, integer=True, min=1, hint="e.g. --batch-size 4")
    check_value("max_length", max_length, integer=True, min=8, hint="e.g. --max-length 128")
    if out_dir is not None:
        from headsurgeon.io import ensure_output_dir

        ensure_output_dir(out_dir)  # fail before the slow part
    doms = build_domains(domains, domain_files, local_text=local_text)
    if heads is not None and "interventions" not in parts:
        raise HeadsurgeonError("heads to intervene on were given but interventions are not selected; add 'interventions' to --only")
    facts = model_facts(model) if model is None or isinstance(model, str) else None  # config.json: before any weight is read
    if facts is not None:
        L, H = facts.describe["num_layers"], facts.describe["num_heads"]
        for ref in heads or []:
            if not (0 <= ref.layer < L and 0 <= ref.head < H):
                raise HeadsurgeonError(f"head {ref} does not exist in {facts.describe['name']} ({L} layers x {H} heads); "
                                       "use zero-based indices in range")
    use_stream = decide_streaming(model, stream, dtype=dtype, device=device, placement=placement,
                                  prompts=sum(len(d.prompts) for d in doms), tokens=max_length, batch_size=batch_size)
    if use_stream and "interventions" in parts:  # also for a StreamedModel the caller opened
        raise HeadsurgeonError(
            "interventions re-run the whole model once per head and need it in memory, which the streamed path "
            "does not hold; leave them out (--only sinks,drain,peak) or pass --no-stream with --device-map auto"
        )
    loaded = open_for_run(model, use_stream, dtype=dtype, device=device, placement=placement, progress=progress)
    for ref in heads or []:
        loaded.adapter.check_head(ref.layer, ref.head)
    limit = getattr(loaded.adapter, "max_positions", None)
    if limit is not None:  # truncation never reaches past the position table
        max_length = min(max_length, limit)
    encoded = encode_prompts(loaded.tokenizer, [p for d in doms for p in d.prompts], bos=bos, max_length=max_length)
    start = time.perf_counter()
    streaming = None
    if use_stream:
        probes, cost = measure_prompts_streamed(
            loaded, encoded, values="drain" in parts, residual="peak" in parts, top_k=settings.top_k_dims,
            batch_size=batch_size, activation_budget=activation_budget, progress=progress,
        )
        losses, streaming = None, {**cost.to_dict(), "activation_budget": activation_budget}
    else:
        probes, losses = measure_prompts(
            loaded, encoded, values="drain" in parts, residual="peak" in parts, top_k=settings.top_k_dims,
            batch_size=batch_size, progress=progress,
        )
    summaries = [summarise_prompt(p, settings) for p in probes]
    result = ExtremesResult(
        model=loaded.describe(),
        settings=settings.to_dict(),
        options={"parts": list(parts), "bos": bos, "max_length": max_length, "batch_size": batch_size, "local_text": local_text,
                 "dtype": str(loaded.dtype).removeprefix("torch."), "device": str(loaded.device),
                 "execution": "streamed" if use_stream else "in-memory", "streaming": streaming,
                 "placement": getattr(loaded, "placement", None)},
        domains=[{"name": d.name, "sources": d.sources, "prompts": len(d.prompts),
                  "tokens": int(sum(e.length for e in encoded if e.prompt.domain == d.name))} for d in doms],
        prompts=[_prompt_record(loaded.tokenizer, e, s) for e, s in zip(encoded, summaries)],
        per_prompt=_stack(summaries, parts),
        massive_dims={g: massive_dims(probes, summaries, report=settings.report_dims, group=g) for g in GROUPS} if "peak" in parts else None,
    )
    del probes
    if "interventions" in parts:
        result.interventions = _interventions(loaded, encoded, losses, summaries, result, heads, settings, batch_size, progress)
    result.elapsed_seconds = time.perf_counter() - start
    if out_dir is not None:
        from .outputs import write_extremes_outputs

        write_extremes_outputs(result, out_dir)
    return result


def _prompt_record(tokenizer, encoded, s: PromptSummary) -> dict:
    return {
        "name": encoded.prompt.name,
        "domain": encoded.prompt.domain,
        "tokens": encoded.length,
        "first_token": first_token(tokenizer, encoded),
        "sink_tokens": [
            {"position": int(p), "token": tokenizer.decode([encoded.ids[p]]), "heads": int(s.sink_counts[p]),
             "received": round(float(s.sink_received[p]), 4)}
            for p in s.sink_positions
        ],
    }


def _stack(summaries: list[PromptSummary], parts: tuple[str, ...]) -> dict[str, np.ndarray]:
    names = ["bos_mass", "sink_share", "sinks_first", "sinks_elsewhere"]
    if "drain" in parts:
        names += ["value_first", "value_later", "value_other"]
    if "peak" in parts:
        names += ["resid_first", "resid_later", "resid_other", "median_abs"]
    return {n: np.stack([np.asarray(getattr(s, n), dtype=float) for s in summaries]) for n in names}


def _interventions(loaded, encoded, losses, summaries, result: ExtremesResult, heads, settings, batch_size, progress) -> dict:
    metric = result.domain_metric()
    if heads is None:
        chosen = pick_intervention_heads(metric, result.dormancy_classes(), n_dependent=settings.intervention_domain_dependent,
                                         n_controls=settings.intervention_controls)
    else:
        classes = result.dormancy_classes()
        chosen = [(ref, str(classes[ref.layer, ref.head])) for ref in heads]
    # the first few prompts of every domain
    keep, seen = [], {}
    for i, e in enumerate(encoded):
        seen[e.prompt.domain] = seen.get(e.prompt.domain, 0) + 1
        if seen[e.prompt.domain] <= settings.intervention_prompts:
            keep.append(i)
    sinks = [sorted({0, *summaries[i].sink_positions.tolist()}) for i in keep]
    out = run_interventions(
        loaded, [encoded[i] for i in keep], [losses[i] for i in keep], sinks, chosen,
        {d: metric[k] for k, d in enumerate(result.domain_names)}, domain_names=result.domain_names,
        threshold=settings.dormant_threshold, batch_size=batch_size, progress=progress,
    )
    out["metric"] = settings.dormancy_metric
    out["removed_positions"] = "position 0 and the prompt's sink tokens"
    return out
