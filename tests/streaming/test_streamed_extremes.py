"""Streamed extreme-token reductions equal the in-memory ones; interventions are refused there."""

import numpy as np
import pytest

from headsurgeon import run_extremes
from headsurgeon.errors import HeadsurgeonError
from headsurgeon.streaming import open_streamed

OPTS = dict(domains=["prose", "code"], local_text=0, what=["sinks", "drain", "peak", "dormancy"], max_length=32, progress=False)


@pytest.mark.parametrize("case", ["bloom", "llama-gqa", "gpt2", "gpt_neox"])
def test_streamed_extremes_equal_in_memory(case, tiny_factory, tmp_path):
    loaded = tiny_factory(case)
    loaded.model.save_pretrained(tmp_path, max_shard_size="20KB")
    loaded.tokenizer.save_pretrained(tmp_path)
    memory = run_extremes(tmp_path, stream=False, **OPTS)
    streamed = run_extremes(tmp_path, stream=True, activation_budget=0, **OPTS)
    assert streamed.options["execution"] == "streamed" and memory.options["execution"] == "in-memory"
    assert memory.per_prompt.keys() == streamed.per_prompt.keys()
    for key in memory.per_prompt:
        np.testing.assert_allclose(streamed.per_prompt[key], memory.per_prompt[key], rtol=0, atol=1e-6, equal_nan=True)
    assert streamed.massive_dims == memory.massive_dims
    assert [p["sink_tokens"] for p in streamed.prompts] == [p["sink_tokens"] for p in memory.prompts]


def test_interventions_are_refused_on_the_streamed_path(tiny_factory, tmp_path):
    loaded = tiny_factory("gpt2")
    loaded.model.save_pretrained(tmp_path)
    loaded.tokenizer.save_pretrained(tmp_path)
    with pytest.raises(HeadsurgeonError, match="interventions") as info:
        run_extremes(tmp_path, stream=True, **{**OPTS, "what": ["sinks", "interventions"]})
    assert "\n" not in str(info.value)
    opened = open_streamed(tmp_path)  # a streamed model the caller opened is refused the same way
    with pytest.raises(HeadsurgeonError, match="interventions"):
        run_extremes(opened, **{**OPTS, "what": ["sinks", "interventions"]})
