"""SmolLM2-135M streamed block by block from its converted safetensors equals the in-memory
diagnosis to 1e-6 (the real default model; slow)."""

from __future__ import annotations

import numpy as np

from real_models import SMOLLM2

pytestmark = SMOLLM2


def test_smollm2_streamed_equals_in_memory():
    from headsurgeon import diagnose
    from headsurgeon.diagnosis.metrics import METRICS
    from headsurgeon.prompts import builtin_prompts

    prompts = builtin_prompts()[:6]
    memory = diagnose(None, prompts=prompts, max_length=96, batch_size=3, stream=False, progress=False)
    streamed = diagnose(None, prompts=prompts, max_length=96, batch_size=3, stream=True, activation_budget=1 << 20, progress=False)
    assert streamed.settings["execution"] == "streamed" and streamed.model == memory.model
    for m in METRICS:
        np.testing.assert_allclose(streamed.per_prompt[m], memory.per_prompt[m], rtol=0, atol=1e-6)
    assert (streamed.classes == memory.classes).all()
    cost = streamed.settings["streaming"]
    assert cost["blocks"] == 30
    # the token embedding is read only for the tokens the prompts use, never the output head
    assert cost["weight_bytes_read"] < 4 * (134_515_008 - 49152 * 576 // 2)  # fp32 checkpoint minus most of the embedding
