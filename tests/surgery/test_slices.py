"""Surgical slices: only the pieces train, the rest stays bit-identical, and the result equals
AdamW on whole matrices with masked gradients (the paper's way)."""

import pytest
import torch

from headsurgeon.models import wrap_model
from headsurgeon.models.adapters import HeadRef
from headsurgeon.models.tiny import tiny_model_and_tokenizer
from headsurgeon.surgery import SurgeryPlan, SurgicalSlices
from headsurgeon.surgery.invariant import compare_hashes, frozen_hashes

FAMILIES = ["bloom", "llama", "qwen2", "gpt2", "gpt_neox"]


def _plan(gqa_mode="query"):
    return SurgeryPlan(model={}, targets=[HeadRef(0, 1), HeadRef(1, 2), HeadRef(1, 3)], gqa_mode=gqa_mode)


def _batches(n=4):
    g = torch.Generator().manual_seed(1)
    return [torch.randint(0, 256, (2, 12), generator=g) for _ in range(n)]


@pytest.mark.parametrize("family", FAMILIES)
def test_slices_match_masked_whole_matrix_adamw(family):
    # float64: the two ways sum in a different order, and Adam's normalisation magnifies float32
    # rounding of near-zero gradients; in float64 any real difference would still show.
    lm_a = wrap_model(tiny_model_and_tokenizer(family, seed=3)[0].double(), tiny_model_and_tokenizer(family)[1])
    lm_b = wrap_model(tiny_model_and_tokenizer(family, seed=3)[0].double(), tiny_model_and_tokenizer(family)[1])
    plan = _plan()
    ours = SurgicalSlices(lm_a.adapter, plan, seed=7).install()
    # The paper's way on model B: write the same initial values, train whole matrices, mask gradients.
    ref = SurgicalSlices(lm_b.adapter, plan, seed=7)
    params_b = dict(lm_b.model.named_parameters())
    masks = {}
    with torch.no_grad():
        for region, value in zip(ref.regions, ref._values):
            p = params_b[region.slice.param]
            region.slice.view(p.data).copy_(value)
            masks.setdefault(region.slice.param, torch.zeros_like(p))
            region.slice.view(masks[region.slice.param]).fill_(1.0)
    for name, p in lm_b.model.named_parameters():
        p.requires_grad_(name in masks)
        if name in masks:
            p.register_hook(lambda g, m=masks[name]: g * m)
    opt_a = torch.optim.AdamW(ours.parameters(), lr=1e-2, weight_decay=0.0)
    opt_b = torch.optim.AdamW([params_b[n] for n in masks], lr=1e-2, weight_decay=0.0)
    lm_a.model.eval(), lm_b.model.eval()  # no dropout: the two runs must see identical forwards
    for ids in _batches():
        for lm, opt in ((lm_a, opt_a), (lm_b, opt_b)):
            lm.model(input_ids=ids, labels=ids).loss.backward()
            opt.step()
            opt.zero_grad()
    merged = ours.merged_state_dict()
    state_b = lm_b.model.state_dict()
    for name in masks:
        torch.testing.assert_close(merged[name], state_b[name], rtol=0, atol=1e-10)
    # Optimizer state exists for the pieces only, and its size is the surgical parameter count.
    n_state = sum(s["exp_avg"].numel() for s in opt_a.state.values())
    assert n_state == ours.num_parameters() < sum(masks[n].numel() for n in masks)


@pytest.mark.parametrize("family", FAMILIES)
def test_only_surgical_regions_change_and_merge_is_plain(family):
    lm = wrap_model(*tiny_model_and_tokenizer(family, seed=0))
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    slices = SurgicalSlices(lm.adapter, _plan("group"), seed=0)
    regions = [r.slice for r in slices.regions]
    slices.install()
    opt = torch.optim.AdamW(slices.parameters(), lr=5e-2, weight_decay=0.5)  # weight decay must not leak
    lm.model.train()
    for ids in _batches(3):
        lm.model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    slices.merge()
    after = lm.model.state_dict()
    assert set(after) == set(before)  # plain parameter names again
    report = compare_hashes(frozen_hashes(before, regions), frozen_hashes(after, regions))
    assert report["held"], report
    # ... and the regions did move: Q/K/V away from the old weights, output columns away from zero.
    for r in slices.regions:
        assert not torch.equal(r.slice.view(after[r.slice.param]), r.slice.view(before[r.slice.param])), r


def test_invariant_check_detects_a_single_changed_element():
    lm = wrap_model(*tiny_model_and_tokenizer("llama"))
    slices = SurgicalSlices(lm.adapter, _plan(), seed=0)
    regions = [r.slice for r in slices.regions]
    state = {k: v.clone() for k, v in lm.model.state_dict().items()}
    ref = frozen_hashes(state, regions)
    region = regions[0]
    region.view(state[region.param]).add_(1.0)  # inside a region: allowed
    assert compare_hashes(ref, frozen_hashes(state, regions))["held"]
    name = "model.layers.0.self_attn.q_proj.weight"
    state[name][0, 0] += 1e-7 if region.start > 0 else 0.0
    state[name][-1, -1] = state[name][-1, -1] + 1e-3  # last row belongs to head 3, not a target of layer 0
    rep = compare_hashes(ref, frozen_hashes(state, regions))
    assert not rep["held"] and rep["changed"] == [name]


def test_gqa_query_mode_leaves_shared_kv_untouched():
    lm = wrap_model(*tiny_model_and_tokenizer("llama", heads=4, kv_heads=2))
    q_mode = SurgicalSlices(lm.adapter, _plan("query"), seed=0)
    assert {r.role for r in q_mode.regions} == {"q_weight", "q_bias", "o_weight"}
    g_mode = SurgicalSlices(lm.adapter, _plan("group"), seed=0)
    kv = [r for r in g_mode.regions if r.role in ("k_weight", "v_weight")]
    # layer 1 heads 2 and 3 share KV group 1: its K and V are listed once each.
    assert sorted((r.head.layer, r.role) for r in kv) == [(0, "k_weight"), (0, "v_weight"), (1, "k_weight"), (1, "v_weight")]


def test_initialisation_is_seeded_xavier_and_zero():
    lm = wrap_model(*tiny_model_and_tokenizer("gpt2"))
    a = SurgicalSlices(lm.adapter, _plan(), seed=1)
    b = SurgicalSlices(lm.adapter, _plan(), seed=1)
    c = SurgicalSlices(lm.adapter, _plan(), seed=2)
    for r, va, vb, vc in zip(a.regions, a._values, b._values, c._values):
        assert torch.equal(va, vb)
        if r.init == "zero":
            assert not va.any()
        else:
            fan = va.shape[0] + va.shape[1]
            assert va.abs().max() <= (6 / fan) ** 0.5 + 1e-6 and not torch.equal(va, vc)


@pytest.mark.parametrize("family", ["bloom", "gpt2"])
def test_remove_restores_the_input_model_exactly(family):
    lm = wrap_model(*tiny_model_and_tokenizer(family, seed=0))
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    ids = _batches(1)[0]
    with torch.no_grad():
        logits_before = lm.model(input_ids=ids).logits
    slices = SurgicalSlices(lm.adapter, _plan(), seed=0).install()
    lm.model(input_ids=ids, labels=ids).loss.backward()
    assert all(p.grad is None for n, p in lm.model.named_parameters() if "headsurgeon_slices" not in n)  # no whole-matrix gradients
    slices.remove()
    after = lm.model.state_dict()
    assert set(after) == set(before) and all(torch.equal(after[k], before[k]) for k in before)
    with torch.no_grad():
        assert torch.equal(lm.model(input_ids=ids).logits, logits_before)


def test_installed_forward_equals_the_spliced_weights_under_bf16_autocast():
    lm = wrap_model(*tiny_model_and_tokenizer("llama", seed=0))
    slices = SurgicalSlices(lm.adapter, _plan(), seed=0).install()
    ids = _batches(1)[0]
    with torch.no_grad():
        ours = lm.model(input_ids=ids).logits
        plain = wrap_model(*tiny_model_and_tokenizer("llama", seed=0))
        plain.model.load_state_dict(slices.merged_state_dict())
        torch.testing.assert_close(ours, plain.model(input_ids=ids).logits, rtol=1e-5, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = lm.model(input_ids=ids, labels=ids).loss
    loss.backward()
    # fp32 master copies get fp32 gradients; Q/K/V get zero ones while the output columns are zero
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in slices.parameters())
    roles = {id(p): r.role for p, r in zip(slices.parameters(), (slices.regions[i] for n in slices.installed for i, _ in slices.installed[n]))}
    assert all(p.grad.abs().sum() > 0 for p in slices.parameters() if roles[id(p)] == "o_weight")
