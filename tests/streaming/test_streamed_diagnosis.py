"""The block-streamed path gives the in-memory path's numbers, reading each weight once."""

import numpy as np
import pytest
from safetensors import safe_open

from headsurgeon import diagnose
from headsurgeon.diagnosis.metrics import METRICS
from headsurgeon.errors import HeadsurgeonError
from headsurgeon.models import load_model
from headsurgeon.models.placement import Placement
from headsurgeon.streaming import ShardReader, open_streamed

PROMPTS = [
    "The cat sat on the mat and looked at the door for a long time.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
    "Paris is the capital of France; Berlin is the capital of Germany.",
    "one two three four five six seven eight nine ten eleven twelve",
    "A short one.",
]


def save_sharded(loaded, folder):
    """Several shards per model (tiny shards force a real index), and the tokenizer."""
    loaded.model.save_pretrained(folder, max_shard_size="20KB")
    loaded.tokenizer.save_pretrained(folder)
    return folder


def stored_bytes(folder) -> int:
    reader = ShardReader(folder)
    total = 0
    for shard in set(reader.weight_map.values()):
        with safe_open(folder / shard, framework="pt") as f:
            for key in f.keys():
                t = f.get_slice(key)
                total += int(np.prod(t.get_shape())) * (2 if t.get_dtype() in ("BF16", "F16") else 4)
    return total


def test_streamed_equals_in_memory_for_every_family(tiny, tmp_path):
    folder = save_sharded(tiny, tmp_path / "ckpt")
    assert (folder / "model.safetensors.index.json").is_file()
    memory = diagnose(folder, prompts=PROMPTS, batch_size=2, stream=False, progress=False)
    # budget 0: every held hidden state goes through a safetensors file on disk and back
    streamed = diagnose(folder, prompts=PROMPTS, batch_size=2, stream=True, activation_budget=0, progress=False)
    assert memory.settings["execution"] == "in-memory" and streamed.settings["execution"] == "streamed"
    for m in METRICS:
        np.testing.assert_allclose(streamed.per_prompt[m], memory.per_prompt[m], rtol=0, atol=1e-6)
        assert not np.isnan(streamed.per_prompt[m]).any()
    assert streamed.model == memory.model
    cost = streamed.settings["streaming"]
    assert cost["blocks"] == tiny.adapter.num_layers
    assert cost["activation_bytes_spilled"] > 0 and cost["activation_bytes_peak"] == 0
    # each weight read at most once, and the output head never (no logits are needed)
    assert 0 < cost["weight_bytes_read"] <= stored_bytes(folder)


def test_activations_held_in_memory_give_the_same_numbers(tiny_factory, tmp_path):
    folder = save_sharded(tiny_factory("llama-gqa"), tmp_path / "ckpt")
    spilled = diagnose(folder, prompts=PROMPTS, stream=True, activation_budget=0, progress=False)
    held = diagnose(folder, prompts=PROMPTS, stream=True, progress=False)
    assert held.settings["streaming"]["activation_bytes_spilled"] == 0
    assert held.settings["streaming"]["activation_bytes_peak"] > 0
    np.testing.assert_array_equal(held.per_prompt["bos_mass"], spilled.per_prompt["bos_mass"])


def test_the_skeleton_holds_no_block_weights_between_runs(tiny_factory, tmp_path):
    folder = save_sharded(tiny_factory("bloom"), tmp_path / "ckpt")
    streamed = open_streamed(folder)
    on_meta = {n for n, p in streamed.model.named_parameters() if p.device.type == "meta"}
    blocks = {n for l in range(streamed.adapter.num_layers) for n in streamed.block_parameter_names(l)}
    assert blocks <= on_meta  # nothing of a block is read before it is needed


def test_accelerate_placement_with_disk_offload_gives_the_same_numbers(tiny_factory, tmp_path):
    folder = save_sharded(tiny_factory("qwen2-gqa"), tmp_path / "ckpt")
    memory = diagnose(folder, prompts=PROMPTS, stream=False, progress=False)
    loaded = load_model(folder, placement=Placement("auto", {"cpu": 10_000}, str(tmp_path / "offload")), progress=False)
    assert {p.device.type for p in loaded.model.parameters()} == {"meta"}  # everything offloaded to disk
    placed = diagnose(loaded, prompts=PROMPTS, progress=False)
    np.testing.assert_allclose(placed.per_prompt["bos_mass"], memory.per_prompt["bos_mass"], rtol=0, atol=1e-6)


def test_stream_needs_a_checkpoint_not_a_model_in_memory(tiny_factory):
    with pytest.raises(HeadsurgeonError, match="--stream"):
        diagnose(tiny_factory("gpt2"), prompts=PROMPTS, stream=True, progress=False)


def test_a_folder_of_pickled_weights_is_refused(tiny_factory, tmp_path):
    loaded = tiny_factory("gpt2")
    loaded.model.config.save_pretrained(tmp_path)
    loaded.tokenizer.save_pretrained(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read")  # a pickle is never opened
    with pytest.raises(HeadsurgeonError, match="safetensors only"):
        open_streamed(tmp_path)


def test_layers_of_different_types_get_their_own_masks(tmp_path):
    """Alternating full and sliding-window layers: the model builds one mask per layer type, and
    the recorder hands each block the one the full forward would."""
    import torch
    from transformers import AutoModelForCausalLM

    from headsurgeon.models.tiny import byte_tokenizer, tiny_config

    cfg = tiny_config("qwen2", layers=3)
    cfg.use_sliding_window, cfg.sliding_window = True, 6
    cfg.layer_types = ["full_attention", "sliding_attention", "sliding_attention"]
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.normal_(0.0, 0.3)
    model.save_pretrained(tmp_path)
    byte_tokenizer().save_pretrained(tmp_path)
    memory = diagnose(tmp_path, prompts=PROMPTS[:3], stream=False, progress=False)
    streamed = diagnose(tmp_path, prompts=PROMPTS[:3], stream=True, progress=False)
    np.testing.assert_allclose(streamed.per_prompt["bos_mass"], memory.per_prompt["bos_mass"], rtol=0, atol=1e-6)
