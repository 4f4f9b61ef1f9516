"""What each new family adds, against the library's own computation.

* sliding windows: the declared window is the one the library's mask applies (key 0 gets exactly
  zero weight from rows ``t >= window`` and positive weight before), prompts longer than the
  window run, and BOS mass averages exactly the rows that can see position 0;
* Gemma 2 soft-capping: the captured statistics are those of the capped scores (the cap is in
  effect: removing it changes them);
* q/k/v biases (gpt-oss, Qwen2): re-initialised with their head;
* gpt-oss sinks: ``headsurgeon_eager_sinks`` computes what the family's eager path computes (same
  logits), its sink column is exactly the share the eager path drops, and surgery keeps the sink
  logits frozen while re-initialising a head's q/k/v biases;
* Falcon ALiBi: the model runs as by default (SDPA, ALiBi once), and its eager reference too;
* q/k norms: Qwen3 / Gemma 3 norm weights are untouched by surgery.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from headsurgeon.capture import stream_attention
from headsurgeon.diagnosis import collect_head_stats
from headsurgeon.models.adapters import HeadRef
from headsurgeon.prompts import Prompt
from headsurgeon.prompts.encoding import encode_prompts
from headsurgeon.surgery import SurgeryPlan
from headsurgeon.surgery.slices import SurgicalSlices

LONG = "A prompt much longer than the tiny models' sliding window of eight tokens, so most rows cannot see BOS."
WINDOWED = ["gemma2", "gemma3", "gpt_oss", "mistral-window"]


def _ids(loaded, text=LONG):
    return torch.tensor([loaded.tokenizer(text)["input_ids"]])


@pytest.mark.parametrize("case", WINDOWED)
def test_declared_window_is_the_one_the_mask_applies(case, tiny_factory):
    loaded = tiny_factory(case)
    a = loaded.adapter
    ids = _ids(loaded)
    T = ids.shape[1]
    with torch.no_grad(), a.reference_attention():
        maps = loaded.model(ids, output_attentions=True).attentions
    assert any(a.attention_window(l) is not None for l in range(a.num_layers))
    for layer, A in enumerate(maps):
        w = a.attention_window(layer)
        col0 = A[0, :, :, 0]  # [H, T]
        if w is None:
            assert (col0 > 0).all()
            continue
        assert T > w
        assert (col0[:, :w] > 0).all(), layer  # rows that can see position 0
        assert torch.equal(col0[:, w:], torch.zeros_like(col0[:, w:])), layer  # rows that cannot


@pytest.mark.parametrize("case", WINDOWED)
def test_bos_mass_counts_only_rows_that_see_position_0(case, tiny_factory):
    loaded = tiny_factory(case)
    a = loaded.adapter
    enc = encode_prompts(loaded.tokenizer, [Prompt("long", "test", LONG)])
    T = enc[0].length
    got = collect_head_stats(loaded, enc, progress=False)
    with torch.no_grad(), a.reference_attention():
        maps = loaded.model(torch.tensor([enc[0].ids]), output_attentions=True).attentions
    for layer, A in enumerate(maps):
        w = a.attention_window(layer) or T
        expected = A[0, :, 1:w, 0].double().mean(-1).numpy()  # rows 1 .. min(w, T) - 1
        np.testing.assert_allclose(got["bos_mass"][0, layer], expected, atol=1e-6)
        assert got["bos_rows"][0, layer] == min(w, T) - 1


def test_gemma2_statistics_are_of_the_capped_scores(tiny_factory):
    loaded = tiny_factory("gemma2")
    a = loaded.adapter
    assert a.attention_softcap() == loaded.model.config.attn_logit_softcapping == 5.0
    enc = encode_prompts(loaded.tokenizer, [Prompt("p", "test", LONG)])
    capped = collect_head_stats(loaded, enc, progress=False)
    loaded.model.config.attn_logit_softcapping = None  # the attention reads the config at each call
    for layer in range(a.num_layers):
        a.attention_module(layer).attn_logit_softcapping = None
    uncapped = collect_head_stats(loaded, enc, progress=False)
    assert np.abs(capped["entropy"] - uncapped["entropy"]).max() > 1e-3  # the cap is in effect


def test_gpt_oss_sink_column_is_what_the_eager_path_drops(tiny_factory):
    loaded = tiny_factory("gpt_oss")
    model = loaded.model
    ids = _ids(loaded)
    with torch.no_grad():
        measuring = model(ids).logits  # the engine (outside a measurement: the family's arithmetic)
        with loaded.adapter.reference_attention():
            ours = model(ids, output_attentions=True)
        model.set_attn_implementation("eager")  # the library's own path
        eager = model(ids, output_attentions=True)
    torch.testing.assert_close(measuring, eager.logits, atol=1e-5, rtol=1e-5)
    assert torch.equal(ours.logits, eager.logits)  # the same model, bit for bit
    for A, E in zip(ours.attentions, eager.attentions):
        assert A.shape[-1] == E.shape[-1] + 1
        assert torch.equal(A[..., :-1], E)  # real keys: the eager weights exactly
        torch.testing.assert_close(A.sum(-1), torch.ones_like(A.sum(-1)), atol=1e-6, rtol=0)
        assert (E.sum(-1) < 1 - 1e-3).any()  # the eager rows alone do not sum to 1


def test_capture_refuses_a_sink_family_without_its_sink_column(tiny_factory, monkeypatch):
    from headsurgeon.errors import CaptureError
    from headsurgeon.models.adapters import FamilyAdapter

    loaded = tiny_factory("gpt_oss")
    # the library's plain eager path as the reference: weights without the sink column
    monkeypatch.setattr(type(loaded.adapter), "reference_attention", FamilyAdapter.reference_attention)
    ids = _ids(loaded)
    with pytest.raises(CaptureError, match="do not sum to 1"):
        with torch.no_grad(), stream_attention(loaded.adapter, torch.tensor([ids.shape[1]]), lambda b: None):
            loaded.model(ids)


@pytest.mark.parametrize("case", ["gpt_oss", "qwen2-gqa"])
def test_surgery_reinitialises_biases_and_keeps_sinks(case, tiny_factory):
    loaded = tiny_factory(case)
    a = loaded.adapter
    before = {n: p.detach().clone() for n, p in loaded.model.named_parameters()}
    slices = SurgicalSlices(a, SurgeryPlan(model={}, targets=[HeadRef(1, 2)], gqa_mode="group"), seed=0).install()
    roles = {r.role for r in slices.regions}
    assert {"q_bias", "k_bias", "v_bias"} <= roles
    slices.merge()
    s = a.head_slices(1, 2)
    for region in (s.q_bias, s.k_bias, s.v_bias):
        assert torch.equal(region.view(a.parameter(region.param)), torch.zeros(region.size))  # re-initialised
        assert not torch.equal(region.view(before[region.param]), torch.zeros(region.size))
    for layer in range(a.num_layers):
        name = a.sink_parameter(layer)
        if name is not None:
            assert torch.equal(a.parameter(name), before[name])  # sinks frozen
    assert (a.sink_parameter(0) is not None) == (case == "gpt_oss")


@pytest.mark.parametrize("case", ["qwen3-gqa", "gemma3", "olmo2"])
def test_qk_norm_weights_are_untouched_by_surgery(case, tiny_factory):
    loaded = tiny_factory(case)
    a = loaded.adapter
    shared = a.shared_parameters(1)
    assert shared and all(a.has_param(n) for n in shared)
    slices = SurgicalSlices(a, SurgeryPlan(model={}, targets=[HeadRef(1, 0), HeadRef(1, 3)], gqa_mode="group"), seed=0)
    assert not {r.slice.param for r in slices.regions} & set(shared)


def test_falcon_alibi_is_measured_once_as_the_default_model_runs(tiny_factory):
    loaded = tiny_factory("falcon-alibi")
    a, model = loaded.adapter, loaded.model
    assert model.config._attn_implementation == "sdpa"  # transformers' default for Falcon
    ids = _ids(loaded)
    with torch.no_grad():
        default = model(ids).logits
        with a.reference_attention():  # eager, with the adapter's ALiBi-once hook
            eager = model(ids).logits
            for layer in range(a.num_layers):  # without the hook, eager adds ALiBi a second time
                a.attention_module(layer)._forward_pre_hooks.clear()
            twice = model(ids).logits
    torch.testing.assert_close(eager, default, atol=1e-5, rtol=1e-5)
    assert (twice - default).abs().max() > 1e-2
