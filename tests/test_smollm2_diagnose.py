"""The real default model (SmolLM2-135M-Instruct, 30 layers x 9 heads, 3 KV heads): a short
diagnosis end to end, and the engine's statistics against transformers' eager maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from real_models import SMOLLM2

pytestmark = SMOLLM2


@pytest.fixture(scope="module")
def smollm2():
    from headsurgeon import load_model

    return load_model(None, progress=False)


def test_diagnose_default_model(smollm2, three_prompts, tmp_path):
    from headsurgeon import Diagnosis, diagnose

    d = diagnose(smollm2, prompts=three_prompts, max_length=128, progress=False)
    assert d.model["name"] == "SmolLM2-135M-Instruct"
    assert (d.model["num_layers"], d.model["num_heads"], d.model["num_kv_heads"]) == (30, 9, 3)
    assert d.shape == (30, 9) and d.per_prompt["bos_mass"].shape == (3, 30, 9)
    assert sum(d.counts().values()) == 270
    assert np.isfinite(d.per_prompt["bos_mass"]).all()
    # SmolLM2 adds no BOS: position 0 is the prompt's own first token, and the output says which
    tok = smollm2.tokenizer
    for p, prompt in zip(d.prompts, three_prompts):
        ids = tok(prompt.text)["input_ids"]
        assert p["first_token"] == tok.convert_ids_to_tokens(ids[0])
        assert ids[0] != tok.bos_token_id
        assert p["tokens"] == min(128, len(ids))
    back = Diagnosis.load(d.save(tmp_path / "diagnosis.json"))
    assert back.classes.tolist() == d.classes.tolist()
    np.testing.assert_allclose(back.bos_mass, d.bos_mass, atol=1e-6)


@torch.no_grad()
def test_engine_equals_eager_maps_on_the_real_model(smollm2, three_prompts):
    from headsurgeon.diagnosis import collect_head_stats
    from headsurgeon.prompts.encoding import encode_prompts

    enc = encode_prompts(smollm2.tokenizer, three_prompts[:1], max_length=96)
    streamed = collect_head_stats(smollm2, enc, progress=False)
    with smollm2.adapter.reference_attention():
        maps = smollm2.model(torch.tensor([enc[0].ids]), output_attentions=True).attentions
    assert len(maps) == 30
    for layer, A in enumerate(maps):
        A = A[0].double()  # [H, T, T]
        T = A.shape[-1]
        q = slice(1, T)  # query 0 excluded, as the default
        bos = A[:, q, 0].mean(-1)
        ent = (-torch.special.xlogy(A, A).sum(-1))[:, q].mean(-1)
        t, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
        local = (A * ((j <= t) & (j >= t - 2))).sum(-1)[:, q].mean(-1)  # keys t-2..t
        np.testing.assert_allclose(streamed["bos_mass"][0, layer], bos.numpy(), atol=1e-5)
        np.testing.assert_allclose(streamed["entropy"][0, layer], ent.numpy(), atol=1e-5)
        np.testing.assert_allclose(streamed["local_mass"][0, layer], local.numpy(), atol=1e-5)
