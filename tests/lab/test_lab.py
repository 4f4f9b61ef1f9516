"""The lab end to end on the tiny preset: runs, checkpoints, analysis, reuse, exact resume,
architectures, and a surgery on a lab model with the rest of the tool."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.lab import ENCODINGS, LabConfig, build_model, preset, run_lab, train_run
from headsurgeon.lab.architectures import parameter_counts
from headsurgeon.lab.data import build_lab_data
from headsurgeon.lab.results import RunRecord


def test_every_encoding_is_trained_diagnosed_and_learns(tiny_lab, tiny_cfg):
    out, analysis = tiny_lab
    assert set(analysis.encodings) == set(ENCODINGS)
    for enc in ENCODINGS:
        rec = RunRecord.load(out / "runs" / f"{enc}-s0" / "run.json")
        assert rec.status == "finished"
        assert [r["step"] for r in rec.rows] == list(tiny_cfg.checkpoint_steps) == [0, 6, 12]
        for row in rec.rows:
            assert (out / "runs" / f"{enc}-s0" / "diagnoses" / f"step-{row['step']}.json").is_file()
            assert np.asarray(row["bos_mass"]).shape == (tiny_cfg.layers, tiny_cfg.heads)
            assert 0 <= row["collapsed_fraction"] <= 1
        # learned something: held-out perplexity falls from the untrained value (~vocab size)
        assert rec.rows[-1]["heldout_ppl"] < 0.8 * rec.rows[0]["heldout_ppl"]
        assert (out / "runs" / f"{enc}-s0" / "model" / "config.json").is_file()
        assert not (out / "runs" / f"{enc}-s0" / "state").exists()
    doc = json.loads((out / "lab.json").read_text())
    assert doc["kind"] == "lab" and doc["schema_version"].startswith("1.")
    for name in ("collapse.png", "perplexity.png", "slopes.png", "heatmaps.png"):
        assert (out / name).stat().st_size > 1000


def test_slopes_come_from_the_library_and_untrained_alibi_ranks_heads_by_slope(tiny_lab, tiny_cfg):
    from transformers.models.bloom.modeling_bloom import build_alibi_tensor

    _, analysis = tiny_lab
    alibi = build_alibi_tensor(torch.ones(1, 2), tiny_cfg.heads, torch.float32)
    assert np.allclose(analysis.doc["slopes"], (alibi[:, 0, 1] - alibi[:, 0, 0]).numpy())
    start = analysis.encodings["alibi"]["start"]["pooled"]
    # gentle slopes leave position 0 reachable even before training: strongly negative rho
    assert start["rho_all_heads"] < -0.5
    assert start["rho_change_all_heads"] is None  # step 0 minus step 0 is constant: rho undefined
    assert len(start["rho_per_layer"]) == tiny_cfg.layers


def test_finished_runs_are_reused(tiny_lab, tiny_cfg):
    out, _ = tiny_lab
    before = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/model/model.safetensors")}
    again = run_lab(tiny_cfg.replace(encodings=("alibi", "rope")), out, progress=False, figures=False)
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert set(again.encodings) == set(ENCODINGS)  # the analysis covers every run in the folder


def test_a_killed_run_resumes_to_identical_weights(tiny_cfg, lab_cache, tmp_path):
    cfg = tiny_cfg.replace(encodings=("rope",))
    data = build_lab_data(cfg, tmp_path)
    full = train_run("rope", 0, cfg, data, tmp_path / "full", progress=False)
    train_run("rope", 0, cfg, data, tmp_path / "cut", progress=False, stop_after_step=9)  # last checkpoint: step 6
    assert RunRecord.load(tmp_path / "cut" / "run.json").status == "running"
    resumed = train_run("rope", 0, cfg, data, tmp_path / "cut", progress=False)
    assert resumed.status == "finished"
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "full" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["heldout_ppl"] for r in full.rows] == pytest.approx([r["heldout_ppl"] for r in resumed.rows], rel=1e-6)
    with pytest.raises(HeadsurgeonError, match="other settings"):
        train_run("rope", 0, cfg.replace(lr=0.5), data, tmp_path / "cut", progress=False)


def test_architectures_match_in_size_and_differ_in_positions(tiny_lab, tiny_cfg):
    from transformers import AutoTokenizer

    out, _ = tiny_lab
    tok = AutoTokenizer.from_pretrained(str(out / "tokenizer"))
    cfg = preset("default")
    counts = {e: parameter_counts(build_model(e, cfg, tok, seed=0, name=e)) for e in ENCODINGS}
    blocks = {e: c["trainable_outside_embeddings"] for e, c in counts.items()}
    assert blocks["nope"] == blocks["learned"]
    assert abs(blocks["alibi"] - blocks["nope"]) == 2 * cfg.hidden  # BLOOM's embedding LayerNorm
    assert abs(blocks["rope"] - blocks["alibi"]) / blocks["alibi"] < 0.01
    assert counts["learned"]["trainable"] - counts["nope"]["trainable"] == cfg.seq_len * cfg.hidden
    # the saved NoPE model has an all-zero position table
    from safetensors.torch import load_file

    wpe = load_file(str(out / "runs" / "nope-s0" / "model" / "model.safetensors"))["transformer.wpe.weight"]
    assert torch.count_nonzero(wpe) == 0


def test_a_lab_model_can_be_planned_and_operated_on(tiny_lab, lab_corpus, tmp_path):
    from headsurgeon.diagnosis import diagnose
    from headsurgeon.surgery import make_plan, operate, preset as surgery_preset

    out, _ = tiny_lab
    model_dir = out / "runs" / "alibi-s0" / "model"
    diag = diagnose(str(model_dir), max_length=32, progress=False)
    plan = make_plan(diag, top=2)
    res = operate(str(model_dir), plan, out_dir=tmp_path / "surgery", config=surgery_preset("tiny").with_(corpus=str(lab_corpus)), progress=False)
    assert res.manifest["status"] == "finished" and res.invariant_held
    assert len(res.manifest["history"]) >= 2


def test_config_errors_are_one_line():
    with pytest.raises(HeadsurgeonError, match="unknown encoding"):
        LabConfig(encodings=("alibi", "sinusoidal"))
    with pytest.raises(HeadsurgeonError, match="divisible"):
        preset("tiny", hidden=30)
    with pytest.raises(HeadsurgeonError, match="unknown lab preset"):
        preset("huge")
    with pytest.raises(HeadsurgeonError, match="unknown lab config key"):
        preset("tiny", width=64)


def test_overrides_are_typed_by_the_field():
    from headsurgeon.lab import parse_override

    assert parse_override("seeds=0, 1") == ("seeds", (0, 1))
    assert parse_override("encodings=alibi,rope") == ("encodings", ("alibi", "rope"))
    assert parse_override("other_corpus=none") == ("other_corpus", None)
    assert parse_override("steps=100") == ("steps", 100) and parse_override("lr=1e-3") == ("lr", 1e-3)
    for bad, message in (("steps", "not key=value"), ("width=64", "unknown lab config key"), ("steps=ten", "not a valid int")):
        with pytest.raises(HeadsurgeonError, match=message):
            parse_override(bad)


def test_every_json_key_is_documented(tiny_lab):
    """docs/lab.md names every key run.json and lab.json carry (keeps the page honest)."""
    import re
    from pathlib import Path

    out, _ = tiny_lab
    documented = set(re.findall(r"`([a-z_0-9]+)`", (Path(__file__).parents[2] / "docs" / "lab.md").read_text()))
    run = json.loads((out / "runs" / "alibi-s0" / "run.json").read_text())
    lab = json.loads((out / "lab.json").read_text())
    enc = lab["encodings"]["alibi"]
    groups = {
        "run.json": run, "architecture": run["architecture"], "parameters": run["architecture"]["parameters"],
        "timing": run["timing"], "rows[]": run["rows"][-1], "lab.json": lab, "data": lab["data"], "data.corpus": lab["data"]["corpus"],
        "lab timing": lab["timing"], "runs.<name>": lab["runs"]["lab-alibi-s0"], "slope_relation[]": lab["runs"]["lab-alibi-s0"]["slope_relation"][0],
        "encodings.<enc>": enc, "series": enc["series"], "slope_relation_over_steps": enc["slope_relation_over_steps"],
        "end": enc["end"], "pooled": enc["end"]["pooled"], "stats": enc["series"]["heldout_ppl"][0],
    }
    for where, obj in groups.items():
        missing = sorted(k for k in obj if k not in documented and not (where == "lab timing" and k in lab["runs"]))
        assert not missing, f"{where} keys not documented in docs/lab.md: {missing}"
