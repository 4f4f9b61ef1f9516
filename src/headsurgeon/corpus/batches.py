"""Deterministic, resumable batch order over packed sequences.

The order of epoch ``e`` is a permutation drawn from a generator seeded by ``(seed, e)`` alone,
so it does not depend on how many batches were drawn before: a trainer that recorded
``(epoch, batch_index)`` resumes with ``iterate_batches(..., epoch=e, start=batch_index)``,
which costs one ``randperm`` and no replay, and yields exactly the batches the uninterrupted
run would have.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator

import torch

from headsurgeon.errors import HeadsurgeonError


def _epoch_seed(seed: int, epoch: int) -> int:
    digest = hashlib.sha256(f"headsurgeon-batches:{int(seed)}:{int(epoch)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)


def epoch_order(n: int, *, shuffle: bool, seed: int, epoch: int) -> torch.Tensor:
    """Indices of the ``n`` sequences in the order epoch ``epoch`` visits them."""
    if not shuffle:
        return torch.arange(n)
    gen = torch.Generator(device="cpu").manual_seed(_epoch_seed(seed, epoch))
    return torch.randperm(n, generator=gen)


def num_batches(n: int, batch_size: int, *, drop_last: bool = False) -> int:
    """How many batches one epoch over ``n`` sequences has."""
    return n // batch_size if drop_last else math.ceil(n / batch_size)


def iterate_batches(
    sequences: torch.Tensor,
    batch_size: int,
    *,
    shuffle: bool = True,
    seed: int = 0,
    epoch: int = 0,
    start: int = 0,
    drop_last: bool = False,
) -> Iterator[torch.Tensor]:
    """Yield ``[batch_size, seq_len]`` batches of one epoch, from batch index ``start`` on.

    Deterministic given ``(seed, epoch)``; the last batch is smaller unless ``drop_last``.
    """
    if batch_size < 1:
        raise HeadsurgeonError(f"batch size must be at least 1, not {batch_size}")
    n = int(sequences.shape[0])
    total = num_batches(n, batch_size, drop_last=drop_last)
    if not 0 <= start <= total:
        raise HeadsurgeonError(f"cannot resume at batch {start}: epoch {epoch} has {total} batches of {batch_size}")
    order = epoch_order(n, shuffle=shuffle, seed=seed, epoch=epoch)
    for b in range(start, total):
        yield sequences[order[b * batch_size : (b + 1) * batch_size]]
