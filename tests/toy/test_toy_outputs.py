"""Files, schema, figures, config handling and the CLI of the toy lab (tiny, fast runs)."""

from __future__ import annotations

import csv
import json

import pytest
import typer
from typer.testing import CliRunner

from figure_stub import stub_savefig
from headsurgeon._version import SCHEMA_VERSION, __version__
from headsurgeon.cli.toy import register
from headsurgeon.errors import HeadsurgeonError
from headsurgeon.toy import PRESETS, ToyConfig, compare_variants, load_toy_run, preset, train
from headsurgeon.toy.config import parse_override

FAST = dict(steps=30, log_every=10, eval_batch_size=16, threads=1)


def test_train_writes_versioned_json_csv_png_and_model(tmp_path, bb_task):
    r = train(preset("tiny-1l", **FAST), out_dir=tmp_path, progress=False, task=bb_task)
    data = load_toy_run(tmp_path)
    assert data["schema_version"] == SCHEMA_VERSION and data["package_version"] == __version__
    assert data["kind"] == "toy_run" and data["created"].endswith("+00:00")
    assert ToyConfig.from_dict(data["config"]) == r.config
    assert data["task"]["triggers"] == [bb_task.alphabet[i] for i in bb_task.triggers]
    assert data["dynamics"]["step"] == [0, 10, 20, 30]
    for key in ("steps_per_s", "generation_ms_per_batch", "step_ms", "generation_fraction"):
        assert data["timing"][key] > 0
    assert set(data["summary"]["verdicts"]) == {"sink", "copy_at_triggers", "drain", "peak"}
    rows = list(csv.DictReader((tmp_path / "dynamics.csv").open()))
    assert len(rows) == 4 and float(rows[-1]["L0H0.bos_attn_nontrigger"]) == pytest.approx(
        r.final["L0H0.bos_attn_nontrigger"])
    assert {"loss_trigger", "loss_nontrigger", "L0H0.bos_logit", "L0H0.value_norm_bos",
            "res1.norm_bos", "res1.norm_other"} <= set(rows[0])
    png = (tmp_path / "dynamics.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    assert (tmp_path / "model.safetensors").stat().st_size > 10_000
    assert not list(tmp_path.glob(".*tmp*"))  # atomic writes leave no temporaries


def test_compare_trains_three_variants(tmp_path, bb_task):
    res = compare_variants(preset("tiny-1l", **FAST), out_dir=tmp_path, progress=False, task=bb_task)
    assert list(res.runs) == ["softmax-adamw", "relu-adamw", "softmax-sgd"]
    assert res.runs["relu-adamw"].config.attention == "relu"
    sgd = res.runs["softmax-sgd"].config
    assert sgd.optimizer == "sgd" and sgd.lr == preset("tiny-1l").sgd_lr
    data = json.loads((tmp_path / "toy_compare.json").read_text())
    assert data["kind"] == "toy_compare"
    base = preset("tiny-1l")
    # same per-step weight shrink as AdamW: lr * wd is kept
    assert sgd.weight_decay == pytest.approx(base.weight_decay * base.lr / base.sgd_lr)
    assert data["variants"]["softmax-sgd"]["changes"] == {
        "optimizer": "sgd", "lr": sgd.lr, "weight_decay": sgd.weight_decay}
    assert (tmp_path / "compare.png").stat().st_size > 50_000
    for name in res.runs:
        assert (tmp_path / name / "toy_run.json").is_file()


def test_config_validation_and_overrides():
    assert parse_override("lr=1e-3") == ("lr", 1e-3)
    assert parse_override("mlp=false") == ("mlp", False)
    assert parse_override("n_layers=2") == ("n_layers", 2)
    assert parse_override("text_path=none") == ("text_path", None)
    assert parse_override("no_attn=0,2") == ("no_attn", "0,2")
    for bad in ("lr", "nope=1", "n_layers=two", "mlp=maybe"):
        with pytest.raises(HeadsurgeonError):
            parse_override(bad)
    for bad in (dict(attention="linear"), dict(optimizer="adam"), dict(dim=65, n_heads=2),
                dict(no_attn="0"), dict(no_attn="5", n_layers=3), dict(steps=0)):
        with pytest.raises(HeadsurgeonError):
            ToyConfig(**bad)
    with pytest.raises(HeadsurgeonError, match="unknown toy preset"):
        preset("huge")
    assert {"tiny-1l", "small-3l", "paper-1l", "paper-3l"} <= set(PRESETS)
    paper = preset("paper-1l")
    assert (paper.dim, paper.seq_len, paper.batch_size, paper.lr, paper.weight_decay,
            paper.n_triggers) == (256, 256, 512, 3e-4, 1e-4, 3)


def _app():
    app = typer.Typer()
    register(app)
    return app


def test_cli_train_and_compare(tmp_path, monkeypatch):
    # the commands' wiring and output; the figures they write are drawn and checked above
    stub_savefig(monkeypatch)
    runner = CliRunner()
    out = tmp_path / "t"
    res = runner.invoke(_app(), ["toy", "train", "--preset", "tiny-1l", "--steps", "20",
                                 "--out", str(out), "--no-progress", "--set", "log_every=10",
                                 "--set", "eval_batch_size=16"])
    assert res.exit_code == 0, res.output
    assert "steps/s" in res.output and "attention on BOS, non-trigger" in res.output
    assert (out / "toy_run.json").is_file() and (out / "dynamics.png").is_file()
    out = tmp_path / "c"
    res = runner.invoke(_app(), ["toy", "compare", "--preset", "tiny-1l", "--steps", "20",
                                 "--out", str(out), "--no-progress", "--variant", "relu-adamw",
                                 "--variant", "softmax-sgd", "--set", "eval_batch_size=16"])
    assert res.exit_code == 0, res.output
    assert "relu-adamw" in res.output and "softmax-adamw" not in res.output
    assert (out / "compare.png").is_file()
    res = runner.invoke(_app(), ["toy", "presets"])
    assert res.exit_code == 0 and "tiny-1l" in res.output and "no_attn" in res.output


def test_cli_user_errors_are_headsurgeon_errors(tmp_path):
    runner = CliRunner()
    res = runner.invoke(_app(), ["toy", "train", "--set", "lr=fast", "--out", str(tmp_path)])
    assert isinstance(res.exception, HeadsurgeonError)
    res = runner.invoke(_app(), ["toy", "train", "--text", str(tmp_path / "missing.txt"),
                                 "--out", str(tmp_path)])
    assert isinstance(res.exception, HeadsurgeonError) and "does not exist" in str(res.exception)
