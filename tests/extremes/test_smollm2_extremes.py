"""The real default model (SmolLM2-135M-Instruct), two prompts: the three phenomena show up."""

from __future__ import annotations

import numpy as np

from real_models import SMOLLM2

pytestmark = SMOLLM2


def test_extremes_on_two_prompts(tmp_path):
    from headsurgeon import load_model
    from headsurgeon.extremes import ExtremesResult, run_extremes
    from headsurgeon.models import HeadRef

    loaded = load_model(None, progress=False)
    res = run_extremes(loaded, domains=["prose"], local_text=0, max_length=64, heads=[HeadRef(15, 3)],
                       out_dir=tmp_path, progress=False)
    assert len(res.prompts) == 2
    # position 0 is a sink token of both prompts, and most heads sink on it
    assert all(p["sink_tokens"] and p["sink_tokens"][0]["position"] == 0 for p in res.prompts)
    assert res.per_prompt["sinks_first"].mean() > 0.3
    # residual-state peak: position 0's norm is tens of times the median in the middle layers
    assert np.nanmax(res.residual_ratio()) > 20
    # value-state drain: most heads' value at position 0 is smaller than the median
    assert np.nanmedian(res.drain_ratio()) < 1.0
    # the massive dimension is one and the same across the middle layers
    dims = [layer[0]["dim"] for layer in res.massive_dims["first"][13:25]]
    assert len(set(dims)) == 1
    assert [r["head"] for r in res.interventions["heads"]] == ["L15H3"]
    assert ExtremesResult.load(tmp_path / "extremes.json").parts == res.parts
