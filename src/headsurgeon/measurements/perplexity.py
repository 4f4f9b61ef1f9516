"""Perplexity of a causal LM on packed sequences.

``ppl = exp(mean NLL)`` where the mean is over every next-token prediction (``T - 1`` per
sequence), weighted by token, not by batch — so the number does not depend on the batch size.
The NLL is accumulated in fp64 from fp32 log-probabilities even when the forward runs under
bf16 autocast, because a sum over millions of tokens in low precision drifts.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from headsurgeon.corpus.build import spread_rows
from headsurgeon.errors import HeadsurgeonError
from headsurgeon.models.cpu_bf16 import enable_for_bf16_on_this_cpu


@dataclass
class PerplexityResult:
    """``ppl`` = exp(``mean_nll``) over ``tokens`` predicted tokens in ``sequences`` sequences."""

    ppl: float
    mean_nll: float
    tokens: int
    sequences: int

    def to_dict(self) -> dict:
        return asdict(self)


def _autocast(device: torch.device, dtype: torch.dtype | None, model_dtype: torch.dtype):
    if dtype is None or dtype == model_dtype:
        return contextlib.nullcontext()
    enable_for_bf16_on_this_cpu(dtype, device)  # bf16 autocast on a CPU without native bf16: widened
    return torch.autocast(device_type=device.type, dtype=dtype)


def perplexity(
    model: torch.nn.Module,
    sequences: torch.Tensor,
    *,
    batch_size: int = 4,
    max_sequences: int | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = False,
) -> PerplexityResult:
    """Token-weighted perplexity of ``model`` on ``sequences`` [N, T] (no padding).

    Runs under ``no_grad`` in eval mode and restores the model's previous train/eval mode.
    ``dtype`` (e.g. ``torch.bfloat16``) runs the forward under autocast; ``None`` keeps the
    model's own precision. ``max_sequences`` uses N rows evenly spaced over ``sequences``
    (packed corpora are in file order, so the first N rows would be one file's text).
    """
    if sequences.ndim != 2 or sequences.shape[1] < 2:
        raise HeadsurgeonError(f"perplexity needs sequences shaped [N, T] with T >= 2, got {tuple(sequences.shape)}")
    sequences = spread_rows(sequences, max_sequences)
    if sequences.shape[0] == 0:
        raise HeadsurgeonError("no sequences to evaluate perplexity on; build a longer corpus or lower seq_len")
    if batch_size < 1:
        raise HeadsurgeonError(f"batch size must be at least 1, not {batch_size}")
    param = next(model.parameters())
    device = param.device
    was_training = model.training
    total_nll, total_tokens = 0.0, 0
    starts = range(0, sequences.shape[0], batch_size)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(starts), desc="perplexity", unit="batch", leave=False)
    model.eval()
    try:
        with torch.no_grad():
            for s in starts:
                batch = sequences[s : s + batch_size].to(device=device, dtype=torch.long)
                with _autocast(device, dtype, param.dtype):
                    logits = model(input_ids=batch, use_cache=False).logits
                targets = batch[:, 1:].reshape(-1)
                nll = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), targets, reduction="sum")
                total_nll += float(nll.double())
                total_tokens += targets.numel()
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(ppl=f"{_safe_exp(total_nll / total_tokens):.3g}")
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()
    mean = total_nll / total_tokens
    return PerplexityResult(ppl=_safe_exp(mean), mean_nll=mean, tokens=total_tokens, sequences=int(sequences.shape[0]))


def _safe_exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf
