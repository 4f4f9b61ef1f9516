"""Whether a run goes block-streamed: asked for, or chosen because the model will not fit.

``stream="auto"`` estimates the in-memory run (:mod:`headsurgeon.models.memory`) from the
checkpoint's safetensors headers and the prompt shapes, before any weight is read, and streams
when it does not fit. A model that is not on this machine yet (a hub id outside the cache) is
loaded the ordinary way; ``load_model`` then checks its weights itself.
"""

from __future__ import annotations

from pathlib import Path

import torch

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.models import LoadedModel, load_model
from headsurgeon.models.loading import parse_device, parse_dtype
from headsurgeon.models.memory import MemoryEstimate, estimate_memory
from headsurgeon.models.placement import Placement

from .model import StreamedModel, has_safetensors, open_streamed
from .shards import ShardReader

STREAM_CHOICES = ("auto", True, False)


def local_checkpoint(spec: str | None) -> Path | None:
    """The local safetensors folder for ``spec`` if there is one already (no download, no conversion)."""
    from headsurgeon.models.loading import DEFAULT_MODEL, resolve_local_dir

    if spec in (None, "", DEFAULT_MODEL) or str(spec).endswith(".gguf"):
        try:
            folder = resolve_local_dir(spec)  # converts a GGUF once; small models only
        except HeadsurgeonError:
            return None
    else:
        folder = Path(str(spec)).expanduser()
        if not folder.exists():
            try:
                from huggingface_hub import snapshot_download

                folder = Path(snapshot_download(str(spec), local_files_only=True))
            except Exception:  # not in the cache (or not a hub id): nothing to estimate from
                return None
    return folder if (folder / "config.json").is_file() and has_safetensors(folder) else None


def in_memory_estimate(folder: Path, *, dtype: torch.dtype, prompts: int, tokens: int, batch_size: int,
                       device: str | torch.device = "cpu") -> MemoryEstimate:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(folder)
    numel = sum(ShardReader(folder).numels().values())
    return estimate_memory(config, weight_bytes=numel * _size(dtype), prompts=prompts, tokens=tokens,
                           batch_size=batch_size, dtype=dtype, device=device)


def streamed_estimate(streamed: StreamedModel, *, prompts: int, tokens: int, batch_size: int,
                      activation_budget: int) -> MemoryEstimate:
    """Resident memory of a streamed run: the largest block (read and held), the stem, activations."""
    reader, size = streamed.reader, _size(streamed.dtype)
    block = max(sum(reader.numel(n) for n in streamed.block_parameter_names(l)) for l in range(streamed.adapter.num_layers))
    in_blocks = {n for l in range(streamed.adapter.num_layers) for n in streamed.block_parameter_names(l)}
    skip = in_blocks | streamed.head_parameter_names() | {streamed.embedding_name()}
    stem = sum(reader.numel(n) for n, _ in streamed.model.named_parameters() if n not in skip)
    hidden = streamed.adapter.hidden_size
    stem += prompts * tokens * hidden  # compact embedding: at most one row per token
    return estimate_memory(streamed.model.config, weight_bytes=0, block_bytes=block * size, stem_bytes=stem * size,
                           prompts=prompts, tokens=tokens, batch_size=batch_size, dtype=streamed.dtype, streamed=True,
                           held_activation_bytes=activation_budget, device=streamed.device)


def choose_streaming(spec, stream, *, dtype: torch.dtype, prompts: int, tokens: int, batch_size: int,
                     device: str | torch.device = "cpu") -> tuple[bool, MemoryEstimate | None]:
    """``(stream?, the in-memory estimate if one was made)`` for ``stream`` in :data:`STREAM_CHOICES`."""
    if stream not in STREAM_CHOICES:
        raise HeadsurgeonError(f"stream must be 'auto', True or False, not {stream!r}")
    if stream is not True and stream is not False:
        folder = local_checkpoint(spec)
        if folder is None:
            return False, None
        est = in_memory_estimate(folder, dtype=dtype, prompts=prompts, tokens=tokens, batch_size=batch_size, device=device)
        return not est.fits, est
    return bool(stream), None


def decide_streaming(model, stream, *, dtype: str, device: str, placement: Placement | None, prompts: int, tokens: int,
                     batch_size: int) -> bool:
    """Whether a measuring run (diagnose, extremes) goes block-streamed; one rule for every command.

    A :class:`StreamedModel` the caller opened always streams; a model already in memory, a
    ``placement`` or ``device="auto"`` never does (they spread a whole model over devices, which
    streaming does not), and ``stream=True`` with them is refused; anything else is
    :func:`choose_streaming` on the checkpoint.
    """
    if isinstance(model, StreamedModel):  # opened by the caller, e.g. open_streamed(spec, device="cuda:0")
        return True
    if isinstance(model, LoadedModel) or placement is not None or device == "auto":
        if stream is True:
            raise HeadsurgeonError("--stream reads the checkpoint itself and runs each block on one device: drop --device-map / "
                                   "--device auto, and pass a folder or hub id, not a model in memory")
        return False
    use_stream, _ = choose_streaming(model, stream, dtype=parse_dtype(dtype), prompts=prompts, tokens=tokens,
                                     batch_size=batch_size, device=parse_device(device))
    return use_stream


def open_for_run(model, use_stream: bool, *, dtype: str, device: str, placement: Placement | None,
                 progress: bool) -> LoadedModel | StreamedModel:
    """The model a run measures, after :func:`decide_streaming`: the one given, or opened streamed or loaded."""
    if isinstance(model, (LoadedModel, StreamedModel)):
        return model
    if use_stream:
        return open_streamed(model, dtype=parse_dtype(dtype), device=parse_device(device))
    return load_model(model, progress=progress, dtype=dtype, device=device, placement=placement)


def check_streamed_fits(estimate: MemoryEstimate, model: str) -> None:
    if not estimate.fits:
        raise HeadsurgeonError(
            f"even block-streamed, {model} needs {estimate.summary()}; lower --batch-size or --max-length, "
            "or pass a smaller --activation-budget (held activations spill to disk)"
        )


def _size(dtype: torch.dtype) -> int:
    return torch.finfo(dtype).bits // 8

