"""Perplexity equals exp of the model's own loss, is batch-size independent and leaves the model as it was."""

from __future__ import annotations

import math

import pytest
import torch

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.evaluation import perplexity
from headsurgeon.models.tiny import tiny_model


@pytest.fixture(scope="module")
def seqs():
    return torch.randint(0, 256, (5, 12), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("family", ["llama", "gpt2", "bloom"])
def test_equals_direct_loss(family, seqs):
    model = tiny_model(family)
    with torch.no_grad():
        direct = model(seqs, labels=seqs).loss.item()  # mean over all 5 * 11 predictions
    for batch_size in (1, 2, 5):
        r = perplexity(model, seqs, batch_size=batch_size)
        assert r.tokens == 55 and r.sequences == 5
        assert r.mean_nll == pytest.approx(direct, rel=1e-5)
        assert r.ppl == pytest.approx(math.exp(direct), rel=1e-5)


def test_max_sequences_mode_restored_and_no_grad(seqs):
    model = tiny_model("llama").train()
    r = perplexity(model, seqs, max_sequences=2, progress=True)
    picked = seqs[[0, 4]]  # evenly spaced: first and last
    with torch.no_grad():
        direct = model.eval()(picked, labels=picked).loss.item()
    assert r.sequences == 2 and r.tokens == 22 and r.mean_nll == pytest.approx(direct, rel=1e-5)
    model.train()
    perplexity(model, seqs)
    assert model.training and all(p.grad is None for p in model.parameters())
    model.eval()
    perplexity(model, seqs)
    assert not model.training


def test_bf16_autocast_is_close(seqs):
    model = tiny_model("llama")
    fp32 = perplexity(model, seqs).mean_nll
    bf16 = perplexity(model, seqs, dtype=torch.bfloat16).mean_nll
    assert bf16 == pytest.approx(fp32, rel=0.05) and bf16 != fp32
    assert next(model.parameters()).dtype == torch.float32


def test_bad_input():
    model = tiny_model("gpt2")
    with pytest.raises(HeadsurgeonError, match=r"shaped \[N, T\] with T >= 2"):
        perplexity(model, torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(HeadsurgeonError, match="no sequences to evaluate"):
        perplexity(model, torch.zeros(0, 8, dtype=torch.long))
