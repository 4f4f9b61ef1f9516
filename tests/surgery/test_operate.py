"""End-to-end surgery on tiny models: run, resume after a kill, load in plain transformers, errors."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.models import wrap_model
from headsurgeon.models.adapters import HeadRef
from headsurgeon.models.tiny import tiny_model_and_tokenizer
from headsurgeon.surgery import SurgeryConfig, SurgeryPlan, SurgeryResult, operate, preset, verify_model_dir
from headsurgeon.surgery.checkpoint import generations

PLAN = SurgeryPlan(model={}, targets=[HeadRef(0, 1), HeadRef(1, 2)])


def _cfg(corpus, **kw) -> SurgeryConfig:
    return preset("tiny").with_(corpus=str(corpus), **kw)


def _lm(family="llama", seed=0):
    return wrap_model(*tiny_model_and_tokenizer(family, seed=seed))


@pytest.mark.parametrize("family", ["bloom", "llama", "gpt2", "gpt_neox"])
def test_operate_records_history_and_invariant(family, text_corpus, tmp_path):
    res = operate(_lm(family), PLAN, out_dir=tmp_path / "run", config=_cfg(text_corpus), progress=False)
    m = res.manifest
    assert m["status"] == "finished" and m["fingerprint"]
    steps = [r["step"] for r in m["history"]]
    assert steps == [0, 4, 8, 12]
    for row in m["history"]:
        assert row["train_ppl"] > 1 and row["heldout_ppl"] > 1
        assert (tmp_path / "run" / row["diagnosis"]).is_file()
        assert 0 <= row["targets_healthy"] <= 2
    assert m["stock"]["train_ppl"] > 1
    assert res.invariant_held and m["invariant"]["best"]["held"]
    assert m["trainable_parameters"] > 0 and m["timing"]["tokens_per_second"] > 0
    # Plain transformers loads the result, and it differs from the input only in the surgical slices.
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "models" / "final")
    ids = torch.randint(0, 256, (1, 10))
    assert torch.isfinite(plain(ids).logits).all()


def test_killed_run_resumes_to_identical_weights(text_corpus, tmp_path):
    cfg = _cfg(text_corpus, max_steps=10, eval_every=3)
    full = operate(_lm(seed=5), PLAN, out_dir=tmp_path / "full", config=cfg, progress=False)
    with pytest.raises(KeyboardInterrupt):
        operate(_lm(seed=5), PLAN, out_dir=tmp_path / "cut", config=cfg, progress=False, stop_after_step=7)
    assert [g.name for g in generations(tmp_path / "cut" / "checkpoints")] == ["step-000006", "step-000003"]
    resumed = operate(_lm(seed=5), PLAN, out_dir=tmp_path / "cut", config=cfg, progress=False)
    assert resumed.manifest["resumed"] == [{"from_step": 6}]
    a = AutoModelForCausalLM.from_pretrained(tmp_path / "full" / "models" / "final").state_dict()
    b = AutoModelForCausalLM.from_pretrained(tmp_path / "cut" / "models" / "final").state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [r["step"] for r in resumed.history] == [r["step"] for r in full.history]
    # A finished run is returned as is; the same folder with other settings is refused.
    again = operate(_lm(seed=5), PLAN, out_dir=tmp_path / "cut", config=cfg, progress=False)
    assert again.manifest["updated"] == resumed.manifest["updated"]
    with pytest.raises(HeadsurgeonError, match="different surgery run.*lr 0.01 there, 0.5 now"):
        operate(_lm(seed=5), PLAN, out_dir=tmp_path / "cut", config=_cfg(text_corpus, lr=0.5), progress=False)


def test_every_resumed_session_is_recorded_even_one_killed_before_its_first_checkpoint(text_corpus, tmp_path):
    cfg = _cfg(text_corpus, max_steps=10, eval_every=3)
    for _ in range(2):  # killed at step 8 both times: checkpoint 6, then nothing new on the second go
        with pytest.raises(KeyboardInterrupt):
            operate(_lm(seed=5), PLAN, out_dir=tmp_path / "cut", config=cfg, progress=False, stop_after_step=7)
    done = operate(_lm(seed=5), PLAN, out_dir=tmp_path / "cut", config=cfg, progress=False)
    assert done.manifest["resumed"] == [{"from_step": 6}, {"from_step": 6}]


def test_run_moved_without_its_models_resumes_to_the_same_final_model(text_corpus, tmp_path, monkeypatch):
    """A run folder carried to another machine without models/ (full models are large; the
    converged study commits only manifests and checkpoints): when the best point is the last
    step, the final model used to be hard-linked from models/best, and with that folder gone it
    was written from the model's own tensors - the stock weights. It must be the trained model."""
    import shutil

    cfg = _cfg(text_corpus, max_steps=10, eval_every=3)
    full = operate(_lm(seed=5), PLAN, out_dir=tmp_path / "full", config=cfg, progress=False)
    assert full.manifest["best"]["step"] == 10  # the case under test: final == best
    # Ctrl-C right after the last checkpoint (steps 0, 3, 6, 9, 10): best is step 10, from this session
    from headsurgeon.surgery import killpoints

    monkeypatch.setattr(killpoints, "_hits", {})
    monkeypatch.setenv(killpoints.ENV, "manifest-saved:5:INT")
    with pytest.raises(KeyboardInterrupt):
        operate(_lm(seed=5), PLAN, out_dir=tmp_path / "cut", config=cfg, progress=False)
    monkeypatch.delenv(killpoints.ENV)
    assert json.loads((tmp_path / "cut" / "manifest.json").read_text())["status"] != "finished"
    shutil.rmtree(tmp_path / "cut" / "models")
    operate(_lm(seed=5), PLAN, out_dir=tmp_path / "cut", config=cfg, progress=False)
    a = AutoModelForCausalLM.from_pretrained(tmp_path / "full" / "models" / "final").state_dict()
    b = AutoModelForCausalLM.from_pretrained(tmp_path / "cut" / "models" / "final").state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_run_moved_without_its_models_and_best_not_last_keeps_the_numbers(text_corpus, tmp_path, capsys):
    """The other case: the best point (here by targets_healthy, all healthy right after the
    re-init, at step 0) was an earlier session's and its model went with models/. The run
    finishes with the trained final model, the best's numbers stay, its path says it is gone,
    and the CLI summary says so instead of failing."""
    import shutil

    from headsurgeon.cli.operate import _summary

    cfg = _cfg(text_corpus, max_steps=10, eval_every=3, best_metric="targets_healthy")
    full = operate(_lm(seed=5), PLAN, out_dir=tmp_path / "full", config=cfg, progress=False)
    assert full.manifest["best"]["step"] < 10
    with pytest.raises(KeyboardInterrupt):
        operate(_lm(seed=5), PLAN, out_dir=tmp_path / "cut", config=cfg, progress=False, stop_after_step=7)
    shutil.rmtree(tmp_path / "cut" / "models")
    done = operate(_lm(seed=5), PLAN, out_dir=tmp_path / "cut", config=cfg, progress=False)
    best = done.manifest["best"]
    assert best["path"] is None and best["step"] == full.manifest["best"]["step"] and best["value"] == full.manifest["best"]["value"]
    assert done.invariant_held and "best" not in done.manifest["invariant"]
    a = AutoModelForCausalLM.from_pretrained(tmp_path / "full" / "models" / "final").state_dict()
    b = AutoModelForCausalLM.from_pretrained(tmp_path / "cut" / "models" / "final").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    _summary(done, True)
    assert "not kept" in capsys.readouterr().out


def test_run_started_before_an_option_existed_is_still_the_same_run(text_corpus, tmp_path):
    """A manifest without a newer option (here: one we delete) matches when the option is at its
    default, so upgrading headsurgeon does not orphan a half-finished run; a non-default value does not."""
    cfg = _cfg(text_corpus, max_steps=4, eval_every=2)
    with pytest.raises(KeyboardInterrupt):
        operate(_lm(), PLAN, out_dir=tmp_path / "run", config=cfg, progress=False, stop_after_step=3)
    path = tmp_path / "run" / "manifest.json"
    m = json.loads(path.read_text())
    assert m["config"]["keep_epoch_models"] is True  # the default
    del m["config"]["keep_epoch_models"]
    m["fingerprint"] = "from-an-older-version"
    path.write_text(json.dumps(m))
    with pytest.raises(HeadsurgeonError, match="keep_epoch_models False now, not set there"):
        operate(_lm(), PLAN, out_dir=tmp_path / "run", config=cfg.with_(keep_epoch_models=False), progress=False)
    resumed = operate(_lm(), PLAN, out_dir=tmp_path / "run", config=cfg, progress=False)
    assert resumed.manifest["status"] == "finished" and resumed.manifest["resumed"] == [{"from_step": 2}]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(text_corpus, tmp_path):
    lm = _lm()
    calls = {"n": 0}

    def poison(module, args, output):
        if module.training:
            calls["n"] += 1
            if calls["n"] > 12:  # step 7 of 12, after the checkpoint at step 4
                output.loss = output.loss * float("nan")
        return output

    lm.model.register_forward_hook(poison)
    with pytest.raises(HeadsurgeonError, match="loss became nan.*last good checkpoint"):
        operate(lm, PLAN, out_dir=tmp_path / "run", config=_cfg(text_corpus), progress=False)
    m = SurgeryResult.load(tmp_path / "run").manifest
    assert m["status"].startswith("stopped")
    assert generations(tmp_path / "run" / "checkpoints")[0].name == "step-000004"


def test_bf16_and_gradient_checkpointing_still_train_the_slices(text_corpus, tmp_path):
    cfg = _cfg(text_corpus, precision="bf16", gradient_checkpointing=True, max_steps=4, eval_every=4)
    res = operate(_lm("qwen2"), PLAN, out_dir=tmp_path / "run", config=cfg, progress=False)
    assert res.invariant_held
    before = _lm("qwen2").model.state_dict()
    after = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "models" / "final").state_dict()
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(before[q][8:16], after[q][8:16])  # head 1 of layer 0 moved
    assert after[q].dtype == torch.float32


def test_verify_detects_tampering(text_corpus, tmp_path):
    operate(_lm(), PLAN, out_dir=tmp_path / "run", config=_cfg(text_corpus, max_steps=4), progress=False)
    final = tmp_path / "run" / "models" / "final"
    assert verify_model_dir(final)["held"]
    from safetensors.torch import load_file, save_file

    f = next(final.glob("*.safetensors"))
    state = load_file(str(f))
    state["model.layers.1.mlp.up_proj.weight"][0, 0] += 1.0
    save_file(state, str(f), metadata={"format": "pt"})
    report = verify_model_dir(final)
    assert not report["held"] and report["changed"] == ["model.layers.1.mlp.up_proj.weight"]


def test_bad_inputs(text_corpus, tmp_path):
    with pytest.raises(HeadsurgeonError, match="--lr must be a finite number > 0"):
        _cfg(text_corpus, lr=-1.0)
    with pytest.raises(HeadsurgeonError, match="out of range"):
        operate(_lm(), SurgeryPlan(model={}, targets=[HeadRef(9, 0)]), out_dir=tmp_path / "a", config=_cfg(text_corpus), progress=False)
    with pytest.raises(HeadsurgeonError, match="plan was made for .*num_layers 30 in the plan, 2 here"):
        plan = SurgeryPlan(model={"num_layers": 30, "num_heads": 9}, targets=[HeadRef(0, 0)])
        operate(_lm(), plan, out_dir=tmp_path / "b", config=_cfg(text_corpus), progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.txt").write_text("   \n")
    with pytest.raises(HeadsurgeonError):
        operate(_lm(), PLAN, out_dir=tmp_path / "c", config=_cfg(empty), progress=False)
    short = tmp_path / "short.txt"
    short.write_text("just a few words here")
    with pytest.raises(HeadsurgeonError, match="seq"):
        operate(_lm(), PLAN, out_dir=tmp_path / "d", config=_cfg(short), progress=False)
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "notes.txt").write_text("someone else's work")
    with pytest.raises(HeadsurgeonError, match="not empty"):
        operate(_lm(), PLAN, out_dir=tmp_path / "e", config=_cfg(text_corpus), progress=False)
    assert (tmp_path / "e" / "notes.txt").read_text() == "someone else's work"


def test_second_pass_starts_from_best_model_with_plan_from_its_diagnosis(text_corpus, tmp_path):
    from headsurgeon.models import load_model
    from headsurgeon.surgery import best_model_dir, next_pass_plan

    first = operate(_lm(), PLAN, out_dir=tmp_path / "pass1", config=_cfg(text_corpus, max_steps=4), progress=False)
    plan2 = next_pass_plan(first.run_dir, top=3)
    assert "pass after pass1" in plan2.rules[0] and len(plan2.targets) == 3
    second = operate(load_model(str(best_model_dir(first.run_dir))), plan2, out_dir=tmp_path / "pass2",
                     config=_cfg(text_corpus, max_steps=4), progress=False)
    assert second.invariant_held
    # Pass 2's stock is pass 1's best model: same held-out perplexity as pass 1 recorded at its best step.
    best_row = next(r for r in first.history if r["step"] == first.best["step"])
    assert second.manifest["stock"]["heldout_ppl"] == pytest.approx(best_row["heldout_ppl"], rel=1e-4)


def test_each_evaluation_records_the_mean_loss_since_the_previous_one(text_corpus, tmp_path):
    """``train_loss_mean`` is the mean of the step losses since the last evaluation (the same
    training evaluated every step gives those step losses), ``train_loss`` the last of them."""
    every = operate(_lm(), PLAN, out_dir=tmp_path / "every", config=_cfg(text_corpus, max_steps=6, eval_every=1), progress=False)
    third = operate(_lm(), PLAN, out_dir=tmp_path / "third", config=_cfg(text_corpus, max_steps=6, eval_every=3), progress=False)
    losses = {r["step"]: r["train_loss"] for r in every.manifest["history"][1:]}
    assert all(r["train_loss_mean"] == r["train_loss"] for r in every.manifest["history"][1:])
    rows = {r["step"]: r for r in third.manifest["history"][1:]}
    assert sorted(rows) == [3, 6]
    for step, row in rows.items():
        window = [losses[s] for s in range(step - 2, step + 1)]
        assert row["train_loss"] == pytest.approx(losses[step], abs=1e-4)
        assert row["train_loss_mean"] == pytest.approx(sum(window) / 3, abs=2e-4)
        assert abs(row["train_loss_mean"] - row["train_loss"]) > 1e-4  # the window is not just the last step
    assert "train_loss_mean" not in every.manifest["history"][0]
