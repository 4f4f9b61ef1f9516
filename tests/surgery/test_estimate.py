"""What operate says before it starts: run shape, --dry-run estimate, progress lines, auto preset."""

from headsurgeon.models import wrap_model
from headsurgeon.models.adapters import HeadRef
from headsurgeon.models.tiny import tiny_model_and_tokenizer
from headsurgeon.surgery import SurgeryPlan, auto_preset, estimate, operate, preset
from headsurgeon.surgery.estimate import duration, evaluation_steps, run_shape

PLAN = SurgeryPlan(model={}, targets=[HeadRef(0, 1), HeadRef(1, 2)])


def _lm():
    return wrap_model(*tiny_model_and_tokenizer("llama", seed=0))


def test_run_shape_counts_steps_tokens_and_evaluations():
    cfg = preset("tiny").with_(max_steps=10, eval_every=4)
    s = run_shape(cfg, train_sequences=40)  # 40 rows / (2 x 2) = 10 steps per epoch
    assert (s.steps, s.steps_per_epoch, s.decided_by) == (10, 10, "max_steps")
    assert s.tokens_per_step == 2 * 2 * 32 and s.tokens == 10 * 128
    assert evaluation_steps(10, 10, 4) == [0, 4, 8, 10] and s.evaluations == 5  # + the stock evaluation
    by_epochs = run_shape(preset("paper"), train_sequences=80)  # 80 / 8 = 10 steps per epoch, 3 epochs
    assert (by_epochs.steps, by_epochs.decided_by) == (30, "epochs") and "3 epochs" in by_epochs.describe()
    assert duration(42) == "42 s" and duration(600) == "10 min" and duration(8460) == "2 h 21 min"


def test_auto_preset_names_a_preset_and_a_reason():
    name, why = auto_preset()
    assert name in ("cpu", "paper") and why
    assert preset("auto") == preset(name)


def test_dry_run_measures_without_writing(text_corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = preset("tiny").with_(corpus=str(text_corpus), max_steps=6, eval_every=3)
    est = estimate(_lm(), PLAN, cfg, preset="tiny", progress=False)
    assert est.shape.steps == 6 and est.shape.evaluations == 4
    assert 0 < est.trainable_parameters < est.model_parameters
    assert est.step_seconds > 0 and est.evaluation_seconds > 0
    assert est.total_seconds >= est.train_seconds
    assert est.weights_bytes > 0 and est.optimizer_bytes == 16 * est.trainable_parameters
    assert any("trainable parameters" in line for line in est.lines())
    assert list(tmp_path.iterdir()) == []
    # the counts are those of the run itself
    res = operate(_lm(), PLAN, out_dir=tmp_path / "run", config=cfg, progress=False)
    assert res.manifest["trainable_parameters"] == est.trainable_parameters
    assert res.manifest["outcome"]["steps"] == est.shape.steps and res.manifest["outcome"]["tokens"] == est.shape.tokens
    assert len(res.manifest["history"]) + 1 == est.shape.evaluations


def test_operate_says_what_it_does(text_corpus, tmp_path, capsys):
    cfg = preset("tiny").with_(corpus=str(text_corpus), max_steps=4, eval_every=2)
    operate(_lm(), PLAN, out_dir=tmp_path / "run", config=cfg, progress=True)
    err = capsys.readouterr().err
    assert "run: 4 optimizer steps (--max-steps;" in err
    assert "evaluated stock in" in err and "evaluated step 0 in" in err and "evaluated step 4 in" in err
    assert "first step took" in err and "remaining 3 steps" in err
    assert "saving the final model" in err
