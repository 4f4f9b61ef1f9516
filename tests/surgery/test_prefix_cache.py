"""The frozen-prefix cache skips the layers below the lowest target from the second epoch on and
changes nothing else: weights after two epochs equal those of the same run without it."""

from dataclasses import replace

import pytest
import torch

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.models import wrap_model
from headsurgeon.models.adapters import HeadRef
from headsurgeon.models.tiny import tiny_model_and_tokenizer
from headsurgeon.surgery import SurgeryPlan, operate, preset
from headsurgeon.surgery.prefix_cache import FrozenPrefixCache

PLAN = SurgeryPlan(model={}, targets=[HeadRef(1, 2)])  # lowest target in layer 1: layer 0 is the frozen prefix


def _without_dropout(model):
    """Tiny GPT-2 / GPT-NeoX come with dropout; the cache (rightly) refuses that, so switch it off."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        for key, value in list(vars(module).items()):
            if "drop" in key and isinstance(value, float):
                setattr(module, key, 0.0)
    for key, value in model.config.to_dict().items():
        if "drop" in key and isinstance(value, float):
            setattr(model.config, key, 0.0)
    return model


def _run(family, corpus, out, **kw):
    cfg = replace(preset("tiny"), max_steps=None).with_(corpus=str(corpus), epochs=2, max_train_tokens=1600, eval_every=100,
                                                        diagnose_every_eval=False, keep_epoch_models=False, **kw)
    model, tok = tiny_model_and_tokenizer(family, seed=0)
    lm = wrap_model(_without_dropout(model), tok)
    return operate(lm, PLAN, out_dir=out, config=cfg, progress=False), lm


@pytest.mark.parametrize("family", ["llama", "bloom", "gpt2", "gpt_neox"])
def test_cached_prefix_trains_to_the_same_weights(family, text_corpus, tmp_path):
    plain, lm_plain = _run(family, text_corpus, tmp_path / "plain")
    cached, lm_cached = _run(family, text_corpus, tmp_path / "cached", cache_frozen_prefix=True)
    pc = cached.manifest["prefix_cache"]
    steps = cached.manifest["outcome"]["steps"]
    assert steps == plain.manifest["outcome"]["steps"] and steps >= 4
    # every micro-batch of epoch 1 computed layer 0; in epoch 2 those whose rows were all seen skipped it
    # (each epoch drops the last few rows, so a few epoch-2 micro-batches hold a row seen for the first time)
    assert pc["micro_batches_skipped"] + pc["micro_batches_computed"] == 2 * steps  # grad_accum 2 in the tiny preset
    assert pc["micro_batches_computed"] >= steps and pc["micro_batches_skipped"] >= steps // 2
    a, b = lm_plain.model.state_dict(), lm_cached.model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
    assert cached.manifest["history"][-1]["heldout_ppl"] == pytest.approx(plain.manifest["history"][-1]["heldout_ppl"], rel=1e-5)


def test_skipped_layers_really_do_not_run_and_the_cap_is_respected():
    lm = wrap_model(*tiny_model_and_tokenizer("llama", seed=0))
    ran = []
    block0 = lm.adapter.block(0)
    inner = block0.mlp
    inner.register_forward_hook(lambda m, a, o: ran.append(1))
    per_row = 8 * lm.adapter.hidden_size * 4
    cache = FrozenPrefixCache(lm.adapter, 1, n_rows=4, max_bytes=3 * per_row)  # room for 3 of the 4 rows
    ids = torch.randint(0, 200, (4, 8))
    rows = torch.arange(4)
    with torch.no_grad():
        with cache.batch(rows):
            first = lm.model(input_ids=ids).logits
        assert len(ran) == 1 and cache.capacity == 3 and cache.filled.tolist() == [True, True, True, False]
        with cache.batch(rows):  # row 3 is not kept: computed again
            lm.model(input_ids=ids)
        assert len(ran) == 2 and cache.hits == 0
        with cache.batch(rows[:3]):
            again = lm.model(input_ids=ids[:3]).logits
        assert len(ran) == 2 and cache.hits == 1  # layer 0's MLP did not run
        torch.testing.assert_close(again, first[:3], rtol=0, atol=1e-6)
    assert "forward" not in vars(block0)  # the class forward again, no pass-through left behind


def test_a_model_with_dropout_is_refused():
    lm = wrap_model(*tiny_model_and_tokenizer("gpt2", seed=0))  # GPT-2's defaults: dropout 0.1
    with pytest.raises(HeadsurgeonError, match="uses dropout"):
        FrozenPrefixCache(lm.adapter, 1, n_rows=4, max_bytes=1 << 20)


def test_prefix_cache_cap_must_not_be_negative():
    with pytest.raises(HeadsurgeonError, match="prefix-cache-gb"):
        preset("tiny").with_(prefix_cache_gb=-1.0)
