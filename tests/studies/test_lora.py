"""The matched LoRA baseline: parameter count, injection, training path and its resume."""

import pytest
import torch
from safetensors.torch import load_file
from study_helpers import tiny_lm

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.models.adapters import HeadRef
from headsurgeon.studies import LoraPieces, matched_sizing, surgical_parameter_count, train_lora
from headsurgeon.surgery import SurgeryPlan, SurgicalSlices, preset

PLAN = SurgeryPlan(model={}, targets=[HeadRef(0, 1), HeadRef(1, 2), HeadRef(1, 3)])


@pytest.mark.parametrize("family,overrides", [("llama", {}), ("gpt2", {}), ("bloom", {}), ("mistral", {"heads": 8, "kv_heads": 2, "hidden": 64})])
def test_matched_rank_count_is_close_and_injected_exactly(family, overrides):
    lm = tiny_lm(family, **overrides)
    sizing = matched_sizing(lm.adapter, PLAN)
    # the count surgery would train, computed without allocating, equals what SurgicalSlices allocates
    assert sizing.surgery_parameters == surgical_parameter_count(lm.adapter, PLAN) == SurgicalSlices(tiny_lm(family, **overrides).adapter, PLAN).install().num_parameters()
    assert abs(sizing.lora_parameters - sizing.surgery_parameters) <= sizing.per_rank / 2
    ids = torch.randint(0, 256, (2, 12))
    before = lm.model(input_ids=ids).logits
    pieces = LoraPieces(lm.adapter, sizing, seed=0)
    assert pieces.num_parameters() == sizing.lora_parameters
    # counted from the model itself, not through the pieces (whose constructor checks its own count)
    assert sum(p.numel() for p in lm.model.parameters() if p.requires_grad) == sizing.lora_parameters
    trainable = {n for n, p in lm.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert all(any(m in n for m in sizing.modules) for n in trainable)  # only the targets' layers
    assert torch.allclose(lm.model(input_ids=ids).logits, before, atol=1e-5)  # B = 0: starts at the stock model


def test_matched_count_within_two_percent_at_realistic_width():
    lm = tiny_lm("llama", layers=2, heads=8, kv_heads=2, hidden=128)
    plan = SurgeryPlan(model={}, targets=[HeadRef(0, h) for h in range(4)] + [HeadRef(1, h) for h in range(3)])
    sizing = matched_sizing(lm.adapter, plan)
    assert sizing.rank > 1 and abs(sizing.ratio - 1) < 0.02


def test_lora_run_trains_only_lora_and_resumes_to_the_same_weights(study_corpus, tmp_path):
    cfg = preset("tiny").with_(corpus=str(study_corpus), max_steps=6, eval_every=2, keep_epoch_models=False)
    lm = tiny_lm()
    base = {n: p.detach().clone() for n, p in lm.model.named_parameters()}
    full = train_lora(lm, PLAN, out_dir=tmp_path / "full", config=cfg, progress=False)
    m = full.manifest
    assert m["status"] == "finished" and m["kind"] == "lora_run"
    assert [r["step"] for r in m["history"]] == [0, 2, 4, 6]
    assert m["history"][0]["heldout_ppl"] == m["stock"]["heldout_ppl"]  # B = 0 at step 0 (the row is the stock row by construction; test above checks B = 0 on logits)
    assert m["history"][-1]["heldout_ppl"] != m["stock"]["heldout_ppl"]
    assert m["trainable_parameters"] == m["lora"]["lora_parameters"]
    for n, p in lm.model.named_parameters():  # the base weights never move
        if "lora_" not in n:
            key = n.replace(".base_layer", "")
            assert torch.equal(p, base[key]), n
    with pytest.raises(KeyboardInterrupt):
        train_lora(tiny_lm(), PLAN, out_dir=tmp_path / "cut", config=cfg, progress=False, stop_after_step=3)
    resumed = train_lora(tiny_lm(), PLAN, out_dir=tmp_path / "cut", config=cfg, progress=False)
    assert resumed.manifest["resumed"] == [{"from_step": 2}]
    a = load_file(str(tmp_path / "full" / "adapter" / "final.safetensors"))
    b = load_file(str(tmp_path / "cut" / "adapter" / "final.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # finished: returned as is, nothing rewritten; other settings in the same folder are refused
    stamp = (tmp_path / "cut" / "manifest.json").stat().st_mtime_ns
    again = train_lora(tiny_lm(), PLAN, out_dir=tmp_path / "cut", config=cfg, progress=False)
    assert again.manifest["history"] == resumed.manifest["history"]
    assert (tmp_path / "cut" / "manifest.json").stat().st_mtime_ns == stamp
    with pytest.raises(HeadsurgeonError, match="different LoRA run"):
        train_lora(tiny_lm(), PLAN, out_dir=tmp_path / "cut", config=cfg.with_(lr=0.5), progress=False)


def test_lora_run_moved_without_its_adapters_resumes(study_corpus, tmp_path, monkeypatch):
    """As for surgery runs: a folder copied without adapter/ still finishes, with the trained matrices."""
    import shutil

    cfg = preset("tiny").with_(corpus=str(study_corpus), max_steps=6, eval_every=2, keep_epoch_models=False)
    full = train_lora(tiny_lm(), PLAN, out_dir=tmp_path / "full", config=cfg, progress=False)
    assert full.manifest["best"]["step"] == 6  # final == best: the linked case
    from headsurgeon.surgery import killpoints

    monkeypatch.setattr(killpoints, "_hits", {})
    monkeypatch.setenv(killpoints.ENV, "manifest-saved:4:INT")  # Ctrl-C after the last checkpoint (0, 2, 4, 6)
    with pytest.raises(KeyboardInterrupt):
        train_lora(tiny_lm(), PLAN, out_dir=tmp_path / "cut", config=cfg, progress=False)
    monkeypatch.delenv(killpoints.ENV)
    shutil.rmtree(tmp_path / "cut" / "adapter")
    train_lora(tiny_lm(), PLAN, out_dir=tmp_path / "cut", config=cfg, progress=False)
    a = load_file(str(tmp_path / "full" / "adapter" / "final.safetensors"))
    b = load_file(str(tmp_path / "cut" / "adapter" / "final.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_lora_run_folder_opens_in_compare_and_report_readers(study_corpus, tmp_path):
    """The LoRA arm writes the same manifest type as operate: the run readers open it."""
    from headsurgeon.evaluation import compare, load_run, perplexity_trajectory

    cfg = preset("tiny").with_(corpus=str(study_corpus), max_steps=4, eval_every=2)
    res = train_lora(tiny_lm(), PLAN, out_dir=tmp_path / "lora", config=cfg, progress=False)
    run = load_run(res.run_dir)
    assert run.manifest.kind == "lora_run" and [p.step for p in run.eval_points()] == [0, 2, 4]
    c = compare([res.run_dir])
    assert c.labels[0] == "stock" and len(c.labels) == 4
    assert perplexity_trajectory(run.manifest)["points"]
    assert res.manifest["best"]["path"].startswith("adapter/")
