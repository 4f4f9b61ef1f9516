"""CLI options made from configuration fields: operate and study expose SurgeryConfig (and
StudySettings) through the fields' own metadata, apply what was typed through the dataclass (its
rules refuse bad values), and ``none`` unsets a field that may be None. In-process, nothing trains."""

from __future__ import annotations

import typer

from headsurgeon.cli.config_options import UNSET, _show, apply_overrides, config_fields
from headsurgeon.cli.main import app, run
from headsurgeon.options import flag_name, help_text
from headsurgeon.studies.settings import STUDY_PRESETS, StudySettings
from headsurgeon.surgery.config import PRESETS, SurgeryConfig


def _params(name: str) -> dict:
    return {p.name: p for p in typer.main.get_command(app).commands[name].params}


def test_operate_has_one_option_per_config_field_with_its_help_rule_and_preset_defaults():
    params = _params("operate")
    for name in config_fields(SurgeryConfig):
        p = params[name]
        words = help_text(SurgeryConfig, name)
        assert flag_name(name) in p.opts, name
        assert words[1:] in p.help, name  # the field's help and rule (first letter may be capitalised)
        defaults = p.help.split("Preset defaults: ")[1]
        assert defaults == " · ".join(f"{k} {_show(getattr(c, name))}" for k, c in PRESETS.items()) + ".", name
    assert "paper 5e-05 · cpu 0.001 · tiny 0.01." in params["lr"].help and "paper none · cpu 200" in params["max_steps"].help
    assert "--no-gradient-checkpointing" in params["gradient_checkpointing"].secondary_opts


def test_study_options_leave_out_what_the_study_sets_per_run():
    params = _params("study")
    assert "seed" not in params and "reinitialise" not in params  # --seeds, and the arms, decide them
    for name in config_fields(SurgeryConfig, exclude=("seed", "reinitialise")):
        assert name in params, name
    for name in config_fields(StudySettings, exclude=("threads",)):
        assert name in params, name
    assert "--targets" in params["n_targets"].opts  # the rule's own flag name
    assert "smollm2-converged 4" in params["patience"].help and "continued to the same budget" in params["patience"].help
    assert f"smollm2 {STUDY_PRESETS['smollm2'].n_targets}" in params["n_targets"].help


def test_apply_overrides_goes_through_the_dataclass_rules():
    cfg = apply_overrides(PRESETS["cpu"], {"max_steps": UNSET, "lr": 2e-3, "other_corpus": UNSET})
    assert (cfg.max_steps, cfg.lr, cfg.other_corpus) == (None, 2e-3, None)
    assert apply_overrides(PRESETS["cpu"], {}) is PRESETS["cpu"]


def _capture_operate(monkeypatch):
    import headsurgeon.surgery as surgery

    seen = {}

    class Stop(Exception):
        pass

    def fake(model, plan, *, out_dir, config, **kw):
        seen["config"] = config
        raise Stop

    monkeypatch.setattr(surgery, "operate", fake)
    return seen, Stop


def test_operate_applies_typed_values_and_none(monkeypatch, tmp_path):
    seen, _ = _capture_operate(monkeypatch)
    run(["operate", str(tmp_path / "plan.json"), "--preset", "cpu", "--max-steps", "none", "--epochs", "2", "--lr", "0.002",
         "--no-diagnose-every-eval", "--other-corpus", "none", "--warmup-fraction", "0.25", "--no-progress"])  # stops at the fake
    cfg = seen["config"]
    assert (cfg.max_steps, cfg.epochs, cfg.lr, cfg.diagnose_every_eval, cfg.other_corpus, cfg.warmup_fraction) == (None, 2, 0.002, False, None, 0.25)
    assert cfg.seq_len == PRESETS["cpu"].seq_len  # untouched fields keep the preset's value


def test_bad_values_are_refused_by_the_field_rule(capsys, tmp_path):
    plan = str(tmp_path / "plan.json")
    cases = [(["--warmup-fraction", "1"], "--warmup-fraction must be a finite number >= 0 and < 1, not 1.0"),
             (["--max-steps", "abc"], "--max-steps takes a whole number or 'none', not 'abc'"),
             (["--eval-sequences", "0"], "--eval-sequences must be a whole number >= 1, not 0"),
             (["--best-metric", "loss"], "--best-metric must be one of heldout_ppl")]
    for extra, message in cases:
        assert run(["operate", plan, "--preset", "tiny", *extra]) == 2, extra
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and message in err, (extra, err)
    assert run(["study", "--preset", "tiny", "--n-boot", "5"]) == 2
    err = capsys.readouterr().err
    assert "--n-boot must be a whole number >= 100, not 5" in err and err.count("\n") == 1


def test_docs_hold_the_generated_option_tables():
    from pathlib import Path

    from headsurgeon.cli.config_options import markdown_table
    from headsurgeon.cli.study import STUDY_OWNED, STUDY_SHARED

    docs = (Path(__file__).parents[1] / "docs" / "cli.md").read_text(encoding="utf-8")
    assert markdown_table(SurgeryConfig, config_fields(SurgeryConfig), PRESETS) in docs
    training = {k: v.training for k, v in STUDY_PRESETS.items()}
    assert markdown_table(SurgeryConfig, config_fields(SurgeryConfig, exclude=STUDY_OWNED), training) in docs
    assert markdown_table(StudySettings, config_fields(StudySettings, exclude=STUDY_SHARED), STUDY_PRESETS) in docs
