"""The toy transformer: shapes, causality, and the two attention definitions."""

from __future__ import annotations

import math

import pytest
import torch

from headsurgeon.toy.config import preset
from headsurgeon.toy.model import ToyTransformer, relu_attention, softmax_attention
from headsurgeon.toy.train import build_model


def _model(**kw):
    args = dict(vocab_size=12, seq_len=16, n_layers=2, n_heads=2, dim=32, mlp=True,
                layer_norm=True, attention="softmax")
    args.update(kw)
    torch.manual_seed(0)
    return ToyTransformer(**args).eval()


def test_shapes_and_trace():
    m = _model()
    x = torch.randint(0, 12, (3, 16))
    logits, tr = m.run_with_trace(x)
    assert logits.shape == (3, 16, 12)
    assert tr.attn_layers == [0, 1]
    assert [p.shape for p in tr.probs] == [(3, 2, 16, 16)] * 2
    assert [s.shape for s in tr.scores] == [(3, 2, 16, 16)] * 2
    assert [v.shape for v in tr.values] == [(3, 2, 16, 16)] * 2  # D = 32 / 2
    assert [h.shape for h in tr.residuals] == [(3, 16, 32)] * 3  # embeddings + 2 blocks
    # softmax rows are distributions over visible keys, masked scores are -inf
    p = tr.probs[0]
    assert torch.allclose(p.sum(-1), torch.ones(3, 2, 16), atol=1e-6)
    above = torch.ones(16, 16, dtype=torch.bool).triu(1)
    assert (p[..., above] == 0).all() and torch.isinf(tr.scores[0][..., above]).all()
    assert torch.isfinite(tr.scores[0][..., ~above]).all()
    # the trace does not change the output
    assert torch.equal(m(x), logits)


@pytest.mark.parametrize("attention", ["softmax", "relu"])
def test_causal(attention):
    m = _model(attention=attention)
    x = torch.randint(0, 12, (2, 16))
    y = x.clone()
    y[:, 9:] = (y[:, 9:] + 1) % 12
    assert torch.allclose(m(x)[:, :9], m(y)[:, :9], atol=1e-6)
    assert not torch.allclose(m(x)[:, 9:], m(y)[:, 9:])


@torch.no_grad()
def test_relu_attention_matches_direct_computation():
    """relu(q.k / sqrt(D)) / (number of visible keys), written out with loops."""
    m = _model(attention="relu", n_layers=1, n_heads=2, mlp=False, layer_norm=False)
    with torch.no_grad():  # make some scores clearly positive, some negative
        m.blocks[0].attn.wq.weight.normal_(std=0.5)
        m.blocks[0].attn.wk.weight.normal_(std=0.5)
    x = torch.randint(0, 12, (2, 16))
    _, tr = m.run_with_trace(x)
    h = m.tok(x) + m.pos(torch.arange(16))
    att = m.blocks[0].attn
    d = 16
    q = (h @ att.wq.weight.T).view(2, 16, 2, d)
    k = (h @ att.wk.weight.T).view(2, 16, 2, d)
    v = (h @ att.wv.weight.T).view(2, 16, 2, d)
    out = torch.zeros(2, 16, 2, d)
    n_pos = n_neg = 0
    for b in range(2):
        for head in range(2):
            for t in range(16):
                for j in range(t + 1):
                    s = float(q[b, t, head] @ k[b, j, head]) / math.sqrt(d)
                    w = max(s, 0.0) / (t + 1)
                    n_pos, n_neg = n_pos + (s > 0), n_neg + (s < 0)
                    assert abs(float(tr.probs[0][b, head, t, j]) - w) < 1e-5
                    out[b, t, head] += w * v[b, j, head]
                for j in range(t + 1, 16):
                    assert float(tr.probs[0][b, head, t, j]) == 0.0
    assert n_pos > 50 and n_neg > 50  # both branches of the relu were exercised
    expected = h + out.reshape(2, 16, 32) @ att.wo.weight.T
    assert torch.allclose(tr.residuals[1], expected, atol=1e-5)


def test_attention_functions_directly():
    s = torch.tensor([[1.0, 5.0, 5.0], [2.0, -1.0, 9.0], [3.0, -2.0, 0.5]])
    r = relu_attention(s)
    assert torch.allclose(r, torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0.5 / 3]]))
    sm = softmax_attention(s)
    assert torch.allclose(sm[1, :2], torch.softmax(torch.tensor([2.0, -1.0]), 0))
    assert sm[0, 0] == 1 and sm[1, 2] == 0


def test_no_attn_and_no_mlp_layers():
    m = _model(n_layers=3, no_attn=frozenset({0, 2}), no_mlp=frozenset({1}))
    assert [b.attn is None for b in m.blocks] == [True, False, True]
    assert [b.mlp is None for b in m.blocks] == [False, True, False]
    _, tr = m.run_with_trace(torch.randint(0, 12, (1, 16)))
    assert tr.attn_layers == [1] and len(tr.probs) == 1 and len(tr.residuals) == 4


def test_build_model_is_seeded_and_leaves_global_rng_alone():
    cfg = preset("tiny-1l")
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_model(cfg, 34)
    after = torch.rand(1)
    b = build_model(cfg, 34)
    c = build_model(cfg.replace(seed=1), 34)
    assert torch.equal(before, after)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.tok.weight, c.tok.weight)
