"""Memory estimates, the one-line error naming the streamed path, automatic streaming,
placement options, the activation store and the hub-cache lookup."""

import json

import pytest
import torch

from headsurgeon import diagnose
from headsurgeon.cli.main import run
from headsurgeon.errors import HeadsurgeonError
from headsurgeon.models import load_model, memory
from headsurgeon.models.placement import (
    parse_max_memory,
    parse_size,
    placement_from_options,
)
from headsurgeon.streaming import (
    ActivationStore,
    open_streamed,
    resolve_checkpoint_folder,
)
from headsurgeon.streaming.choice import in_memory_estimate, streamed_estimate

PROMPTS = ["The cat sat on the mat and looked at the door.", "def f(x):\n    return x * 2\n"]


@pytest.fixture
def folder(tiny_factory, tmp_path):
    loaded = tiny_factory("llama-gqa")
    loaded.model.save_pretrained(tmp_path / "ckpt", max_shard_size="20KB")
    loaded.tokenizer.save_pretrained(tmp_path / "ckpt")
    return tmp_path / "ckpt"


def test_estimate_counts_weights_activations_and_statistics(folder):
    est = in_memory_estimate(folder, dtype=torch.float32, prompts=10, tokens=64, batch_size=4)
    n_params = sum(p.numel() for p in load_model(folder, progress=False).model.parameters())
    assert est.weights == 4 * n_params
    assert est.statistics == 3 * 10 * 2 * 4 * 8  # three float64 [prompts, layers, heads] arrays
    assert est.activations > 3 * 4 * 4 * 64 * 64 * 4 - 1  # at least one layer's maps, three float32 copies
    assert est.total == est.weights + est.activations + est.statistics + est.runtime


def test_a_model_that_cannot_fit_is_refused_in_one_line_naming_the_streamed_path(folder, monkeypatch, capsys):
    monkeypatch.setattr(memory, "available_memory", lambda device="cpu": 1000)
    with pytest.raises(HeadsurgeonError) as info:
        load_model(folder, progress=False)
    assert "--stream" in str(info.value) and "\n" not in str(info.value)
    assert run(["diagnose", "-m", str(folder), "--no-stream", "--no-progress", "-o", str(folder.parent / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "--stream" in err and err.count("\n") == 1


def test_auto_streams_exactly_when_the_in_memory_estimate_does_not_fit(folder, monkeypatch):
    inside = in_memory_estimate(folder, dtype=torch.float32, prompts=len(PROMPTS), tokens=512, batch_size=4).total
    s = open_streamed(folder)
    streamed_need = streamed_estimate(s, prompts=len(PROMPTS), tokens=32, batch_size=4, activation_budget=1 << 30).total
    assert streamed_need < inside
    monkeypatch.setattr(memory, "available_memory", lambda device="cpu": (streamed_need + inside) // 2)
    assert diagnose(folder, prompts=PROMPTS, progress=False).settings["execution"] == "streamed"
    monkeypatch.setattr(memory, "available_memory", lambda device="cpu": inside + 1)
    assert diagnose(folder, prompts=PROMPTS, progress=False).settings["execution"] == "in-memory"


def test_sizes_and_max_memory_parse_or_fail_in_one_line():
    assert parse_size("1.5GiB", "--x") == int(1.5 * 2**30) and parse_size("512", "--x") == 512
    assert parse_max_memory("0=20GiB, cpu=60GB") == {0: 20 * 2**30, "cpu": 60 * 10**9}
    for bad in ("0:20GiB", "gpu=1GB", "cpu=lots"):
        with pytest.raises(HeadsurgeonError, match="--max-memory"):
            parse_max_memory(bad)
    with pytest.raises(HeadsurgeonError, match="--device-map"):
        placement_from_options(None, "cpu=1GB", None)


def test_activation_store_spills_to_safetensors_and_cleans_up(tmp_path):
    store = ActivationStore(budget_bytes=4 * 10, spill_dir=tmp_path)
    a, b = torch.arange(10.0), torch.arange(20.0)
    store.put(0, a)
    store.put(1, b)  # over budget: written to disk
    files = list(tmp_path.rglob("*.safetensors"))
    assert len(files) == 1 and store.spilled_bytes == 80 and store.peak_bytes == 40
    assert torch.equal(store.get(0), a) and torch.equal(store.get(1), b)
    store.close()
    assert not list(tmp_path.rglob("*.safetensors"))


def test_a_hub_id_is_served_from_the_local_cache(folder, tmp_path, monkeypatch):
    """The hub cache layout (``models--owner--name/snapshots/<rev>``) resolves offline."""
    cache = tmp_path / "hub"
    rev = "0" * 40
    snap = cache / "models--someone--tiny" / "snapshots" / rev
    snap.parent.mkdir(parents=True)
    import shutil

    shutil.copytree(folder, snap)
    (cache / "models--someone--tiny" / "refs").mkdir()
    (cache / "models--someone--tiny" / "refs" / "main").write_text(rev)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    assert resolve_checkpoint_folder("someone/tiny").resolve() == snap.resolve()
    d = diagnose("someone/tiny", prompts=PROMPTS, stream=True, progress=False)
    assert d.model["name"] == "someone/tiny" and d.settings["execution"] == "streamed"
    with pytest.raises(HeadsurgeonError, match="someone/missing"):
        resolve_checkpoint_folder("someone/missing")


def test_cli_stream_writes_the_streaming_record(folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(["diagnose", "-m", str(folder), "--stream", "--activation-budget", "0", "--no-progress", "-o", str(out)]) == 0
    doc = json.loads((out / "diagnosis.json").read_text())
    assert doc["settings"]["execution"] == "streamed" and doc["settings"]["streaming"]["activation_bytes_spilled"] > 0
    capsys.readouterr()
    assert run(["diagnose", "-m", str(folder), "--activation-budget", "lots", "--no-progress", "-o", str(out)]) == 2
    assert "--activation-budget" in capsys.readouterr().err


def test_every_streaming_key_is_documented(folder):
    import re
    from pathlib import Path

    documented = set(re.findall(r"`([a-z_0-9.\[\]]+)`", (Path(__file__).parents[2] / "docs" / "schema.md").read_text()))
    settings = diagnose(folder, prompts=PROMPTS, stream=True, progress=False).to_dict()["settings"]
    keys = [f"settings.{k}" for k in settings] + [f"settings.streaming.{k}" for k in settings["streaming"]]
    assert [k for k in keys if k not in documented] == []


def test_a_streamed_model_opened_on_a_device_can_be_diagnosed_twice(folder):
    streamed = open_streamed(folder, device="cpu")
    first = diagnose(streamed, prompts=PROMPTS, progress=False)
    second = diagnose(streamed, prompts=PROMPTS, progress=False)  # blocks were freed and are read again
    assert first.settings["execution"] == second.settings["execution"] == "streamed"
    assert (first.per_prompt["bos_mass"] == second.per_prompt["bos_mass"]).all()
    assert all(p.device.type == "meta" for n, p in streamed.model.named_parameters() if ".layers." in n)


def test_a_hub_model_fetched_at_load_gets_its_weights_fingerprint(folder, tmp_path, monkeypatch):
    """Online, ``from_pretrained`` is given the hub id (not a folder); the fingerprint a plan is
    checked against must still come from the files it fetched into the hub cache."""
    import shutil

    import transformers

    import headsurgeon.models.loading as loading
    from headsurgeon.models import load_model
    from headsurgeon.models.preflight import weights_fingerprint

    cache = tmp_path / "hub"
    rev = "1" * 40
    snap = cache / "models--someone--fetched" / "snapshots" / rev
    snap.parent.mkdir(parents=True)
    (cache / "models--someone--fetched" / "refs").mkdir()
    (cache / "models--someone--fetched" / "refs" / "main").write_text(rev)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(loading, "hub_reachable", lambda: True)
    real_model, real_tok = transformers.AutoModelForCausalLM.from_pretrained, transformers.AutoTokenizer.from_pretrained
    asked = []

    def fetch(load):
        def from_hub(ref, *args, **kwargs):  # "download" into the cache, then load from it
            asked.append(ref)
            if not snap.exists():
                shutil.copytree(folder, snap)
            return load(str(snap), *args, **kwargs)
        return from_hub
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", fetch(real_model))
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", fetch(real_tok))
    loaded = load_model("someone/fetched", progress=False, check_memory=False)
    assert asked and asked[0] == "someone/fetched"  # the online path, not the cached-folder one
    assert loaded.weights_fingerprint is not None
    assert loaded.weights_fingerprint == weights_fingerprint(snap) == weights_fingerprint(folder)
    assert loaded.describe()["weights_fingerprint"] == loaded.weights_fingerprint
