"""Turning prompts into token batches without moving what "position 0" means.

BOS policy (``--bos``): ``auto`` keeps the tokenizer's own behaviour (what the model saw in
training: Llama adds ``<s>``, SmolLM2 and BLOOM add nothing, so position 0 is the first word);
``force`` makes sure the tokenizer's BOS token sits at position 0; ``none`` removes a leading
BOS. Every encoded prompt records its actual first token so every output can name it.

Batches are right-padded: real tokens always start at position 0 and padding only ever
appears after the last real token, so causal attention of real queries never sees it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from headsurgeon.errors import HeadsurgeonError

from .builtin import Prompt

BOS_MODES = ("auto", "force", "none")


@dataclass
class EncodedPrompt:
    prompt: Prompt
    ids: list[int]

    @property
    def length(self) -> int:
        return len(self.ids)


@dataclass
class TokenBatch:
    input_ids: torch.Tensor  # [B, T] right-padded
    attention_mask: torch.Tensor  # [B, T] 1 for real tokens
    lengths: torch.Tensor  # [B]
    indices: list[int]  # positions of these prompts in the encoded list


def encode_prompts(tokenizer, prompts: list[Prompt], *, bos: str = "auto", max_length: int | None = None) -> list[EncodedPrompt]:
    """Tokenize ``prompts`` under the BOS policy; reject prompts shorter than 2 tokens."""
    if bos not in BOS_MODES:
        raise HeadsurgeonError(f"--bos must be one of {', '.join(BOS_MODES)}, not '{bos}'; the default is auto")
    bos_id = tokenizer.bos_token_id
    if bos == "force" and bos_id is None:
        raise HeadsurgeonError("--bos force was given but this tokenizer has no BOS token; use --bos auto or none")
    out = []
    for p in prompts:
        ids = list(tokenizer(p.text, add_special_tokens=True)["input_ids"])
        if bos == "force" and (not ids or ids[0] != bos_id):
            ids = [bos_id] + ids
        elif bos == "none":
            while ids and bos_id is not None and ids[0] == bos_id:
                ids = ids[1:]
        if max_length is not None:
            ids = ids[:max_length]
        if len(ids) < 2:
            raise HeadsurgeonError(
                f"prompt '{p.name}' is {len(ids)} token(s) long; attention on position 0 needs at least 2 tokens, lengthen or remove it"
            )
        out.append(EncodedPrompt(p, ids))
    return out


def first_token(tokenizer, encoded: EncodedPrompt) -> str:
    """The actual token at position 0, as the tokenizer spells it."""
    return tokenizer.convert_ids_to_tokens(encoded.ids[0])


def batches(encoded: list[EncodedPrompt], *, batch_size: int, pad_id: int) -> Iterator[TokenBatch]:
    """Right-padded batches, prompts grouped by length to waste little compute on padding."""
    order = sorted(range(len(encoded)), key=lambda i: encoded[i].length)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        T = max(encoded[i].length for i in idx)
        ids = torch.full((len(idx), T), pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), T), dtype=torch.long)
        for row, i in enumerate(idx):
            n = encoded[i].length
            ids[row, :n] = torch.tensor(encoded[i].ids)
            mask[row, :n] = 1
        yield TokenBatch(ids, mask, mask.sum(1), idx)
