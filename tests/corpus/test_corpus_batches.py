"""Batch order: deterministic per (seed, epoch), a permutation, and resumable at any index."""

from __future__ import annotations

import pytest
import torch

from headsurgeon.corpus import epoch_order, iterate_batches, num_batches
from headsurgeon.errors import HeadsurgeonError

SEQS = torch.arange(23 * 4).reshape(23, 4)  # row i starts with 4 * i


def _rows(batches) -> list[int]:
    return [int(r) // 4 for b in batches for r in b[:, 0]]


def test_deterministic_permutation_per_epoch():
    a = _rows(iterate_batches(SEQS, 5, shuffle=True, seed=7, epoch=2))
    assert a == _rows(iterate_batches(SEQS, 5, shuffle=True, seed=7, epoch=2))
    assert sorted(a) == list(range(23)) and a != list(range(23))
    assert a != _rows(iterate_batches(SEQS, 5, shuffle=True, seed=7, epoch=3))
    assert a != _rows(iterate_batches(SEQS, 5, shuffle=True, seed=8, epoch=2))
    assert _rows(iterate_batches(SEQS, 5, shuffle=False, seed=7, epoch=2)) == list(range(23))


@pytest.mark.parametrize("drop_last", [False, True])
def test_resume_from_any_batch_index(drop_last):
    full = list(iterate_batches(SEQS, 5, shuffle=True, seed=1, epoch=4, drop_last=drop_last))
    assert len(full) == num_batches(23, 5, drop_last=drop_last) == (4 if drop_last else 5)
    assert [b.shape[0] for b in full] == ([5] * 4 if drop_last else [5, 5, 5, 5, 3])
    for start in range(len(full) + 1):
        tail = list(iterate_batches(SEQS, 5, shuffle=True, seed=1, epoch=4, start=start, drop_last=drop_last))
        assert len(tail) == len(full) - start
        assert all(torch.equal(x, y) for x, y in zip(tail, full[start:]))


def test_order_does_not_depend_on_global_rng():
    torch.manual_seed(0)
    a = epoch_order(50, shuffle=True, seed=3, epoch=1)
    torch.manual_seed(123)
    torch.rand(10)
    assert torch.equal(a, epoch_order(50, shuffle=True, seed=3, epoch=1))


def test_bad_arguments():
    with pytest.raises(HeadsurgeonError, match="cannot resume at batch 6: epoch 0 has 5 batches"):
        list(iterate_batches(SEQS, 5, shuffle=True, seed=0, epoch=0, start=6))
    with pytest.raises(HeadsurgeonError, match="batch size must be at least 1"):
        list(iterate_batches(SEQS, 0, shuffle=True, seed=0, epoch=0))
