"""Sink detection and attention shares on hand-made attention maps."""

import numpy as np
import pytest
import torch

from headsurgeon.extremes.sinks import (
    head_sink_mask,
    mean_received,
    received_attention,
    share_on,
    sink_tokens,
    visible_queries,
)


def causal_map(T: int, weights_on: dict[int, float], seed: int = 0) -> torch.Tensor:
    """A valid causal attention map: fixed mass on the given keys (when visible), the rest spread
    at random over the other visible keys."""
    g = torch.Generator().manual_seed(seed)
    A = torch.zeros(T, T)
    for t in range(T):
        fixed = {j: w for j, w in weights_on.items() if j <= t}
        if t == 0:
            A[0, 0] = 1.0
            continue
        rest = [j for j in range(t + 1) if j not in fixed]
        left = 1.0 - sum(fixed.values())
        for j, w in fixed.items():
            A[t, j] = w
        if rest:
            r = torch.rand(len(rest), generator=g)
            A[t, rest] = left * r / r.sum()
        else:  # only fixed keys visible: renormalise them
            A[t] /= A[t].sum()
    return A


def test_received_matches_direct_loops():
    T = 9
    maps = torch.stack([causal_map(T, {0: 0.7}), causal_map(T, {4: 0.6}, seed=1)])[None]  # [1, 2, T, T]
    rec = received_attention(maps, torch.tensor([T]))[0].numpy()
    for h in range(2):
        for j in range(T):
            direct = sum(maps[0, h, t, j].item() for t in range(max(j, 1), T))
            assert rec[h, j] == pytest.approx(direct, abs=1e-6)


def test_padding_and_query_zero_are_ignored():
    T, n = 8, 5
    A = causal_map(T, {0: 0.5})
    A[n:] = 7.0  # garbage in padded query rows must not count
    rec = received_attention(A[None, None], torch.tensor([n]))[0, 0].numpy()
    direct = A[1:n].sum(0).numpy()  # queries 1..n-1
    np.testing.assert_allclose(rec, direct, atol=1e-6)


def test_sinks_found_at_first_and_later_positions():
    T = 12
    # head 0 sinks on position 0; head 1 on a "delimiter" at position 4; head 2 is spread
    maps = torch.stack([causal_map(T, {0: 0.8}), causal_map(T, {4: 0.7}, seed=1), causal_map(T, {}, seed=2)])[None]
    rec = received_attention(maps, torch.tensor([T]))[0].numpy()
    mask = head_sink_mask(rec, T, threshold=0.3, min_visible=4)
    assert mask[0].nonzero()[0].tolist() == [0]
    assert mask[1].nonzero()[0].tolist() == [4]
    assert not mask[2].any()
    # mean received is received / number of counted queries that see the key
    np.testing.assert_allclose(mean_received(rec, T)[1, 4], maps[0, 1, 4:, 4].mean().item(), atol=1e-6)


def test_last_positions_need_enough_visible_queries():
    T = 6
    A = torch.eye(T)  # every query attends to itself: the last key is "received" fully by the one query that sees it
    A[0, 0] = 1
    rec = received_attention(A[None, None], torch.tensor([T]))[0].numpy()
    assert visible_queries(T).tolist() == [5, 5, 4, 3, 2, 1]
    assert head_sink_mask(rec, T, threshold=0.3, min_visible=1)[0, -1]
    mask = head_sink_mask(rec, T, threshold=0.3, min_visible=3)[0]
    assert mask.tolist() == [False, False, False, True, False, False]  # key 3: 1 of 3 queries -> 0.33


def test_prompt_sink_tokens_use_head_fraction():
    sinks = np.zeros((2, 5, 7), dtype=bool)  # 10 heads
    sinks[:, :, 0] = True  # all heads on position 0
    sinks[0, :2, 3] = True  # 2 heads on position 3
    pos, counts = sink_tokens(sinks, head_fraction=0.1)
    assert pos.tolist() == [0, 3] and counts[0] == 10 and counts[3] == 2
    pos, _ = sink_tokens(sinks, head_fraction=0.25)
    assert pos.tolist() == [0]


def test_share_on_is_mean_attention_on_the_positions():
    T = 10
    A = causal_map(T, {0: 0.4, 3: 0.3})
    rec = received_attention(A[None, None], torch.tensor([T]))[0, 0].numpy()
    direct = A[1:, [0, 3]].sum(1).mean().item()  # a query before 3 gives it 0
    assert share_on(rec, [0, 3], T) == pytest.approx(direct, abs=1e-6)
    assert share_on(rec, [0], T) == pytest.approx(A[1:, 0].mean().item(), abs=1e-6)
    assert share_on(rec, [], T) == 0.0
