"""Loading: local folders, missing paths, GGUF paths, unsupported folders, the offline hub."""

from __future__ import annotations

import pytest
import torch

from headsurgeon.errors import HeadsurgeonError, UnsupportedArchitectureError
from headsurgeon.models import load_model
from headsurgeon.models.loading import looks_like_hub_id


def one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("spec", ["/nonexistent/model-dir", "./not-here", "~/no/such/model", "../a/b/c"])
def test_missing_path(spec):
    with pytest.raises(HeadsurgeonError) as info:
        load_model(spec)
    msg = one_line(info)
    assert "does not exist" in msg and "pass an existing folder" in msg


def test_folder_without_config(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"\0" * 16)
    with pytest.raises(HeadsurgeonError) as info:
        load_model(str(tmp_path))
    assert "has no config.json" in one_line(info)


def test_missing_gguf_file(tmp_path):
    with pytest.raises(HeadsurgeonError) as info:
        load_model(str(tmp_path / "model.Q4_0.gguf"))
    msg = one_line(info)
    assert "GGUF file" in msg and "does not exist" in msg


def test_hub_ids_are_not_mistaken_for_paths():
    for spec in ("gpt2", "bigscience/bloom-560m", "HuggingFaceTB/SmolLM2-135M-Instruct", "EleutherAI/pythia-70m"):
        assert looks_like_hub_id(spec), spec
    for spec in ("./model", "/abs/model", "~/model", "a/b/c", "../model", "dir\\model"):
        assert not looks_like_hub_id(spec), spec


@pytest.mark.parametrize("spec", ["gpt2", "someorg/some-model-that-is-not-cached"])
def test_offline_hub_id_says_offline_quickly(spec, monkeypatch):
    """Offline, one quick reachability check decides (no retries against the hub): proven by
    counting the checks, not by a stopwatch, which would fail on a slow or busy machine."""
    import headsurgeon.models.loading as loading

    checks = []

    def unreachable(timeout: float = 3.0) -> bool:
        checks.append(timeout)
        return False

    monkeypatch.setattr(loading, "hub_reachable", unreachable)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(HeadsurgeonError) as info:
        load_model(spec)
    msg = one_line(info)
    assert "offline" in msg
    assert "save_pretrained" in msg and "local folder" in msg  # how to use a local copy
    assert checks == [3.0]


def test_reachability_check_is_one_connection_with_a_short_timeout(monkeypatch):
    import socket

    from headsurgeon.models.loading import hub_reachable

    seen = []

    def refuse(address, timeout=None):
        seen.append((address, timeout))
        raise OSError("network unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    assert hub_reachable() is False
    assert len(seen) == 1 and seen[0][1] == 3.0 and seen[0][0][1] == 443


def test_offline_env_var_is_honoured(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HeadsurgeonError, match="offline"):
        load_model("someorg/another-model")


def test_saved_tiny_model_loads_through_load_model(saved_tiny, tiny_factory):
    folder = saved_tiny("llama-gqa")
    loaded = load_model(str(folder), progress=False)
    original = tiny_factory("llama-gqa")
    assert loaded.adapter.family == "llama" and loaded.adapter.num_kv_heads == 2
    assert loaded.name == folder.name and loaded.source == str(folder)
    assert loaded.model.config._attn_implementation == "headsurgeon"  # the measurement engine is selected
    assert not loaded.model.training
    ids = torch.tensor([loaded.tokenizer("hello world")["input_ids"]])
    assert ids[0, 0].item() == loaded.tokenizer.bos_token_id  # the saved tokenizer kept its BOS rule
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(ids).logits, original.model(ids).logits, atol=1e-5, rtol=0)
    assert loaded.describe()["name"] == folder.name and loaded.describe()["num_layers"] == 2


def test_saved_bloom_loads_too(saved_tiny):
    loaded = load_model(str(saved_tiny("bloom")), progress=False)
    assert loaded.adapter.family == "bloom" and loaded.adapter.alibi_slopes() is not None


def test_unsupported_architecture_folder(tmp_path, opt_saver):
    folder = opt_saver(tmp_path / "opt")
    with pytest.raises(UnsupportedArchitectureError) as info:
        load_model(str(folder))
    msg = one_line(info)
    assert "'opt' is not supported" in msg and "llama" in msg and "bloom" in msg


def test_non_causal_lm_folder_is_refused_by_type_before_loading(tmp_path):
    """An encoder-decoder folder gets the supported-types message, not a transformers error."""
    from transformers import T5Config, T5ForConditionalGeneration

    folder = tmp_path / "t5"
    T5ForConditionalGeneration(T5Config(vocab_size=64, d_model=16, d_ff=32, num_layers=1, num_heads=2, d_kv=8)).save_pretrained(folder)
    with pytest.raises(UnsupportedArchitectureError) as info:
        load_model(str(folder))
    assert "'t5' is not supported" in one_line(info)


def test_unreadable_weights_give_one_line(tmp_path, saved_tiny):
    import shutil

    folder = tmp_path / "broken"
    shutil.copytree(saved_tiny("gpt2"), folder)
    for f in folder.glob("*.safetensors"):
        f.write_bytes(b"not a safetensors file")
    with pytest.raises(HeadsurgeonError) as info:
        load_model(str(folder), progress=False)
    assert str(folder) in one_line(info)


def test_dtype_and_device_names_are_checked_before_loading():
    import torch

    from headsurgeon.models.loading import parse_device, parse_dtype

    assert parse_dtype("bf16") is torch.bfloat16 and parse_dtype("float16") is torch.float16 and parse_dtype(torch.float32) is torch.float32
    assert parse_device("cpu") == "cpu" and parse_device("auto") == "auto"
    for bad in ("fp8", "int8", ""):
        with pytest.raises(HeadsurgeonError, match="dtype"):
            parse_dtype(bad)
    with pytest.raises(HeadsurgeonError, match="unknown device"):
        parse_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(HeadsurgeonError, match="no usable CUDA GPU"):
            parse_device("cuda:0")


def test_a_model_loads_in_bfloat16(saved_tiny):
    import torch

    loaded = load_model(str(saved_tiny("llama-gqa")), progress=False, dtype="bf16")
    assert loaded.dtype is torch.bfloat16 and str(loaded.device) == "cpu"
