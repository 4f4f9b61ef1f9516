"""One forward pass per prompt batch: per-prompt reductions and next-token losses."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from headsurgeon.models import LoadedModel
from headsurgeon.prompts.encoding import EncodedPrompt, TokenBatch, batches

from .probe import BatchProbe, PromptProbe


def token_losses(logits: torch.Tensor, batch: TokenBatch) -> list[np.ndarray]:
    """Per prompt of the batch: next-token cross-entropy (nats) at each real position ``0..n-2``."""
    out = []
    for row, n in enumerate(batch.lengths.tolist()):
        ce = F.cross_entropy(logits[row, : n - 1].float(), batch.input_ids[row, 1:n].to(logits.device), reduction="none")
        out.append(ce.cpu().numpy())
    return out


def run_batches(loaded: LoadedModel, encoded: list[EncodedPrompt], *, batch_size: int, desc: str, progress: bool):
    """Yield ``(batch, model inputs)`` with a progress bar over prompts."""
    device = loaded.device
    bar = tqdm(total=len(encoded), desc=desc, unit="prompt", disable=not progress, leave=False)
    try:
        for batch in batches(encoded, batch_size=batch_size, pad_id=loaded.tokenizer.pad_token_id):
            inputs = dict(input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device), use_cache=False)
            yield batch, inputs
            bar.update(len(batch.indices))
    finally:
        bar.close()


@torch.no_grad()
def measure_prompts(
    loaded: LoadedModel,
    encoded: list[EncodedPrompt],
    *,
    values: bool,
    residual: bool,
    top_k: int,
    batch_size: int = 4,
    progress: bool = True,
) -> tuple[list[PromptProbe], list[np.ndarray]]:
    """Reductions (:class:`PromptProbe`) and token losses for every prompt, in input order."""
    probes: list[PromptProbe | None] = [None] * len(encoded)
    losses: list[np.ndarray | None] = [None] * len(encoded)
    model, was_training = loaded.model, loaded.model.training
    model.eval()
    try:
        for batch, inputs in run_batches(loaded, encoded, batch_size=batch_size, desc="measuring", progress=progress):
            probe = BatchProbe(loaded.adapter, batch.lengths, values=values, residual=residual, top_k=top_k)
            with probe.attach():
                logits = model(**inputs).logits
            for row, (i, loss) in enumerate(zip(batch.indices, token_losses(logits, batch))):
                probes[i], losses[i] = probe.prompt(row), loss
    finally:
        model.train(was_training)
    return probes, losses
