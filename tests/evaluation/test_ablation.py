import pytest
import torch

from headsurgeon.evaluation import ablated_heads, ablation_effects
from headsurgeon.models import wrap_model
from headsurgeon.models.adapters import HeadRef
from headsurgeon.models.tiny import tiny_model_and_tokenizer


@pytest.mark.parametrize("family", ["bloom", "llama", "gpt2", "gpt_neox"])
def test_ablation_equals_zeroing_the_output_slice(family):
    lm = wrap_model(*tiny_model_and_tokenizer(family, seed=2))
    ids = torch.randint(0, 256, (2, 14), generator=torch.Generator().manual_seed(0))
    heads = [HeadRef(0, 1), HeadRef(1, 3)]
    with torch.no_grad(), ablated_heads(lm.adapter, heads):
        hooked = lm.model(ids).logits
    plain = lm.model(ids).logits
    with torch.no_grad():
        for h in heads:
            o = lm.adapter.head_slices(h.layer, h.head).o_weight
            o.view(lm.adapter.parameter(o.param).data).zero_()
        zeroed = lm.model(ids).logits
    torch.testing.assert_close(hooked, zeroed, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(hooked, plain)  # the ablation did something, and the hooks were removed


def test_ablation_effects_reports_loss_increase():
    lm = wrap_model(*tiny_model_and_tokenizer("llama", seed=0))
    seqs = torch.randint(0, 256, (3, 16), generator=torch.Generator().manual_seed(1))
    res = ablation_effects(lm, seqs, {"none": [], "all": [HeadRef(l, h) for l in range(2) for h in range(4)]})
    assert res.delta["none"] == pytest.approx(0.0, abs=1e-9)
    assert res.delta["all"] != 0.0 and res.tokens == 3 * 15
