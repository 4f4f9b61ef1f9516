"""The paper's claims that reproduce on this CPU, asserted with margins on small configs.

Setting (the ``tiny-1l`` preset, see docs/toy.md): 1 layer, 1 head, dim 64, length 32,
batch 16, no MLP/LayerNorm, AdamW lr 1e-2. Summaries are means over the last 10% of steps.
Measured on seeds 0-3 (the tests use seed 0):
  softmax, 400 steps: BOS attention at non-trigger positions 0.973-0.991, copy attention at
  triggers 0.902-0.952, BOS attention at triggers <= 0.006, BOS/other value-norm ratio
  0.127-0.206, trigger loss 0.034-0.269 nats, BOS logit gap 14-19;
  ReLU, 1500 steps: BOS attention 0.000, value-norm ratio 0.504-0.767, trigger loss
  0.161-0.422, copy weight 0.49-0.90 (ReLU rows are not normalised).
Training outcomes depend on the CPU's kernels: on a second machine (2026-12-01) the same seed-0
ReLU run ended at trigger loss 0.576 (untrained: 3.52 nats), copy weight 0.557, value-norm ratio
0.572. Thresholds are set with a margin over both machines, never at one machine's numbers.

The residual-state peak (and its absence under SGD) is *not* asserted: it did not reproduce
as the paper describes at any size this CPU could train (docs/toy.md lists the runs).
"""

from __future__ import annotations

import pytest

from headsurgeon.toy import preset, train

SMALL = dict(lr=1e-2, log_every=100, threads=1)


@pytest.fixture(scope="module")
def softmax_run(bb_task):
    return train(preset("tiny-1l", steps=400, **SMALL), progress=False, task=bb_task)


@pytest.fixture(scope="module")
def relu_run(bb_task):
    # ReLU attention learns the copy more slowly; give it 1500 steps so "no sink" is measured
    # on a model that does solve the task, not on an untrained one.
    return train(preset("tiny-1l", steps=1500, attention="relu", **SMALL), progress=False,
                 task=bb_task)


def test_sink_forms_at_non_trigger_positions(softmax_run):
    d = softmax_run.dynamics
    assert d["L0H0.bos_attn_nontrigger"][0] < 0.2  # not there at initialisation
    s = softmax_run.summary
    assert s["bos_attn_nontrigger"] > 0.9
    assert s["bos_logit_gap"] > 3.0  # BOS out-scores the average key by a wide margin


def test_trigger_positions_attend_to_the_copy_source(softmax_run):
    s = softmax_run.summary
    assert s["copy_attn_trigger"] > 0.8
    assert s["bos_attn_trigger"] < 0.05  # the same head is active here, not dormant
    assert s["loss_trigger"] < 0.5  # and it solves the copy (chance would be ~2.5 nats)
    assert s["loss_nontrigger"] < 2.6  # bigram positions are at the bigram entropy level


def test_value_drain(softmax_run):
    d, s = softmax_run.dynamics, softmax_run.summary
    start = d["L0H0.value_norm_bos"][0] / d["L0H0.value_norm_other"][0]
    assert 0.5 < start < 2.0  # no drain at initialisation
    assert s["value_norm_ratio"] < 0.3


def test_relu_attention_has_no_sink_and_no_drain(relu_run, softmax_run):
    s = relu_run.summary
    # well below the untrained 3.5 nats: the model solves the copy, so "no sink" means something
    assert s["loss_trigger"] < 1.0, "the ReLU model must solve the copy for the test to mean anything"
    assert s["copy_attn_trigger"] > 0.3
    assert s["bos_attn_nontrigger"] < 0.1
    assert s["bos_share_nontrigger"] < 0.2  # not even as a share of the (unnormalised) row
    assert s["value_norm_ratio"] > 0.4
    assert s["value_norm_ratio"] > 2.5 * softmax_run.summary["value_norm_ratio"]
    d = relu_run.dynamics  # the BOS value grows with the others instead of being drained
    assert d["L0H0.value_norm_bos"][-1] > 20 * d["L0H0.value_norm_bos"][0]


def test_runs_are_reproducible(bb_task, softmax_run):
    again = train(preset("tiny-1l", steps=400, **SMALL), progress=False, task=bb_task)
    assert again.dynamics["L0H0.bos_attn_nontrigger"] == softmax_run.dynamics["L0H0.bos_attn_nontrigger"]
