"""Studies at convergence: early stopping, the equal-budget continuation, resume, no work twice.

Nothing here depends on speed: where a test needs arms to stop at different steps it replaces the
patience rule by one that stops by run kind, and the run-level tests derive where the real rule
must stop from an uninterrupted run's own history.
"""

import json
import sys

import pytest
from study_helpers import tiny_lm

from headsurgeon.studies import StudyResult, run_study, study_preset
from headsurgeon.studies.arms import target_plan
from headsurgeon.surgery import SurgeryPlan, killpoints, operate
from headsurgeon.surgery.training_run import RunInterrupted

training_run = sys.modules["headsurgeon.surgery.training_run"]
CAP = 8
SEEDS = (0, 1)
STOP_AT = {"lora_run": 2, "surgery_run": 4}  # where the replaced rule stops each kind of run
TIMING = ("compute_seconds", "train_seconds", "eval_seconds", "tokens_per_second")


def _rows(history, keys=("step", "tokens", "lr", "train_loss", "train_ppl", "heldout_ppl")):
    return [{k: r.get(k) for k in keys} for r in history]


# --- one run: the patience rule, and a continuation that is the run that never stopped -----------

@pytest.fixture(scope="module")
def runs(study_corpus, tmp_path_factory):
    from headsurgeon.surgery import preset

    base = tmp_path_factory.mktemp("runs")
    # Held-out perplexity of a tiny random model improves at every step for long; the number of
    # healthy targets (the same rule, another best_metric) stops improving at once.
    cfg = preset("tiny").with_(corpus=str(study_corpus), max_steps=CAP, eval_every=1, best_metric="targets_healthy")
    lm = tiny_lm()
    from headsurgeon.diagnosis import diagnose_encoded
    from headsurgeon.surgery.data import diagnosis_prompts

    diag = diagnose_encoded(lm, diagnosis_prompts(lm), batch_size=4, progress=False)
    plan = target_plan(diag, study_preset("tiny"))
    full = operate(tiny_lm(), plan, out_dir=base / "full", config=cfg, progress=False)
    early = operate(tiny_lm(), plan, out_dir=base / "early", config=cfg.with_(patience=1), progress=False)
    return plan, cfg, full, early, base


def _expected_stop(history, patience, metric="targets_healthy"):
    """Where the documented rule stops: the first evaluation after which `patience` evaluations brought no new best."""
    best = None
    since = 0
    for r in history:
        if best is None or r[metric] > best:
            best, since = r[metric], 0
        else:
            since += 1
        if since >= patience:
            return r["step"]
    return history[-1]["step"]


def test_early_stopping_stops_where_the_rule_says_and_records_why(runs):
    _, _, full, early, _ = runs
    stop = _expected_stop(full.history, 1)
    assert stop < CAP, "precondition: the tiny model's healthy-target count should stop improving within the cap"
    assert early.history[-1]["step"] == stop
    assert _rows(early.history) == _rows(full.history)[: len(early.history)]  # the same run up to there
    st = early.manifest["stopping"]
    assert st == {"reason": "patience", "step": stop, "final_step": stop, "patience": 1, "cap": CAP, "budget": None}
    assert full.manifest["stopping"]["reason"] == "cap" and full.manifest["stopping"]["step"] == CAP
    # the schedule is defined over the cap, not over where the run stopped
    assert [r["lr"] for r in early.history] == [r["lr"] for r in full.history[: len(early.history)]]


def test_a_run_continued_to_a_budget_is_the_run_that_never_stopped(runs):
    plan, cfg, full, early, base = runs
    again = operate(tiny_lm(), plan, out_dir=early.run_dir, config=cfg.with_(patience=1), progress=False)  # no budget: as it was
    assert again.manifest["history"] == early.manifest["history"]
    more = operate(tiny_lm(), plan, out_dir=early.run_dir, config=cfg.with_(patience=1), progress=False, budget_steps=CAP)
    assert _rows(more.history) == _rows(full.history)  # same schedule, data order and updates, no early stop
    assert more.best["step"] == full.best["step"] and more.best["value"] == full.best["value"]  # best over the whole budget
    st = more.manifest["stopping"]
    assert st["reason"] == "budget" and st["step"] == early.history[-1]["step"] and st["budget"] == CAP and st["final_step"] == CAP
    assert more.manifest["resumed"][-1]["to_budget"] == CAP
    assert more.invariant_held


# --- a whole study ------------------------------------------------------------------------------

def _settings(corpus):
    s = study_preset("tiny")
    return s.with_(training=s.training.with_(corpus=str(corpus), max_steps=CAP, eval_every=1, patience=2),
                   seeds=SEEDS, arms=("surgery", "lora"))


def _stop_by_kind(manifest, patience):
    return manifest.history[-1]["step"] >= STOP_AT[manifest.kind]


@pytest.fixture(scope="module")
def study(study_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("converged")
    built = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training_run, "patience_exhausted", _stop_by_kind)
        real = sys.modules["headsurgeon.studies.run"].run_data
        mp.setattr(sys.modules["headsurgeon.studies.run"], "run_data", lambda *a, **k: built.append(1) or real(*a, **k))

        def refuse(*a, **k):
            raise AssertionError("a study arm tokenised the corpus itself")

        mp.setattr(training_run, "run_data", refuse)
        st = run_study(tiny_lm, out_dir=out, settings=_settings(study_corpus), progress=False)
    return st, out, len(built)


def test_every_arm_of_a_seed_gets_the_largest_budget_any_arm_needed(study):
    st, out, _ = study
    for seed in SEEDS:
        b = st.budgets[str(seed)]
        assert b["steps"] == 4 and b["set_by"] == ["surgery"] and b["stop_steps"] == {"surgery": 4, "lora": 2}
        man = {a: json.loads((out / "runs" / a / f"seed-{seed}" / "manifest.json").read_text()) for a in ("surgery", "lora")}
        assert b["tokens"] == man["surgery"]["outcome"]["tokens"] == man["lora"]["outcome"]["tokens"]
        assert man["lora"]["stopping"]["reason"] == "budget" and man["lora"]["stopping"]["step"] == 2
        assert [r["step"] for r in man["lora"]["history"]] == list(range(5))  # continued past 2, evaluated every step
        assert man["surgery"]["stopping"]["reason"] == "patience"
        rows = {r["arm"]: r for r in st.runs if r["seed"] == seed}
        lora_best = min(man["lora"]["history"], key=lambda r: r["heldout_ppl"])
        assert rows["lora"]["scalars"]["best_step"] == lora_best["step"]  # best over the whole budget
        assert rows["lora"]["stopping"]["best_tokens"] == lora_best["tokens"]
        assert rows["lora"]["stopping"]["reason"] == "budget" and rows["surgery"]["stopping"]["reason"] == "patience"
        assert rows["lora"]["scalars"]["final_step"] == rows["surgery"]["scalars"]["final_step"] == 4
    doc = json.loads((out / "study.json").read_text())
    assert doc["budgets"] == st.budgets and StudyResult.load(out).budgets == st.budgets
    from headsurgeon.studies import stopping_table, study_markdown

    assert len(stopping_table(st).splitlines()) == 2 + 2 * len(SEEDS)
    md = study_markdown(st)
    assert stopping_table(st) in md and "best training-corpus PPL" in md
    assert "Where each arm peaked" in (out / "study.html").read_text()


def test_the_study_does_no_work_twice(study, study_corpus, tmp_path):
    st, out, built = study
    assert built == len(SEEDS)  # the corpus is tokenised once per seed, not once per arm
    assert sorted(p.name for p in (out / "plans").iterdir()) == [f"{a}-seed{s}.json" for a in ("lora", "surgery") for s in SEEDS]
    for seed in SEEDS:
        ref = json.loads((out / "runs" / "stock" / f"seed-{seed}" / "reference.json").read_text())
        assert len(ref["ablation_by_heads"]) == 1  # surgery and LoRA share their heads; no unchosen arm is ablated
        man = json.loads((out / "runs" / "surgery" / f"seed-{seed}" / "manifest.json").read_text())
        assert man["stock"]["reused_from"].endswith(f"seed-{seed}/reference.json") and man["stock"]["eval_seconds"] == 0.0
        assert (out / "runs" / "surgery" / f"seed-{seed}" / man["stock"]["diagnosis"]).is_file()
    # The reused stock row equals what operate computes itself, measured independently once.
    cfg = st.settings["training"] | {"seed": 0}
    from headsurgeon.surgery import SurgeryConfig

    plan = SurgeryPlan.load(out / "plans" / "surgery-seed0.json")
    with pytest.raises(RunInterrupted):
        operate(tiny_lm(), plan, out_dir=tmp_path / "alone", config=SurgeryConfig.from_dict(cfg), progress=False, stop_after_step=0)
    alone = json.loads((tmp_path / "alone" / "manifest.json").read_text())["stock"]
    shared = json.loads((out / "runs" / "surgery" / "seed-0" / "manifest.json").read_text())["stock"]
    drop = ("eval_seconds", "reused_from")
    assert {k: v for k, v in shared.items() if k not in drop} == {k: v for k, v in alone.items() if k not in drop}
    assert "reused_from" not in alone


def test_an_interrupted_converged_study_resumes_and_reuses_finished_runs(study, study_corpus, tmp_path, monkeypatch):
    st, _, _ = study
    out = tmp_path / "resumed"
    monkeypatch.setattr(training_run, "patience_exhausted", _stop_by_kind)
    # Ctrl-C at the 11th optimizer step of the process: seed 0 is done (surgery 4 + lora 2 + 2 more), seed 1's
    # surgery run is interrupted at its 3rd step.
    killpoints._hits.clear()
    monkeypatch.setenv(killpoints.ENV, "step:11:INT")
    with pytest.raises(KeyboardInterrupt):
        run_study(tiny_lm, out_dir=out, settings=_settings(study_corpus), progress=False, figures=False)
    monkeypatch.delenv(killpoints.ENV)
    partial = json.loads((out / "study.json").read_text())
    assert partial["status"] == "running" and {(r["arm"], r["seed"]) for r in partial["runs"]} == {("stock", 0), ("surgery", 0), ("lora", 0)}
    again = run_study(tiny_lm, out_dir=out, settings=_settings(study_corpus), progress=False, figures=False)
    assert sorted(again.timing["reused"]) == ["lora/seed-0", "surgery/seed-0"]
    assert sorted(again.timing["trained_now"]) == ["lora/seed-1", "surgery/seed-1"]
    resumed = json.loads((out / "runs" / "surgery" / "seed-1" / "manifest.json").read_text())["resumed"]
    assert resumed and resumed[0]["from_step"] == 2
    # the same numbers as the study that was never interrupted
    def scalars(s):
        return [(r["arm"], r["seed"], {k: v for k, v in r["scalars"].items() if k not in TIMING}) for r in s.runs]

    # (to float noise: a resumed run's untouched heads moved 4e-8 in BOS mass where the other's stayed at 0.0)
    for (arm, seed, x), (_, _, y) in zip(scalars(again), scalars(st)):
        assert x.keys() == y.keys()
        for k in x:
            same = x[k] == y[k] or (isinstance(x[k], float) and x[k] == pytest.approx(y[k], rel=1e-6, abs=1e-6))
            assert same, (arm, seed, k, x[k], y[k])
    assert again.budgets == st.budgets


def test_every_study_key_is_documented(study):
    """docs/schema.md lists every key of study.json (written `study.<path>` there)."""
    import re
    from pathlib import Path

    documented = set(re.findall(r"`(study\.[a-z_0-9.\[\]<>]+)`", (Path(__file__).resolve().parents[2] / "docs" / "schema.md").read_text()))
    _, out, _ = study
    doc = json.loads((out / "study.json").read_text())
    paths = {f"study.{k}" for k in doc}
    for r in doc["runs"]:
        paths |= {f"study.runs[].{k}" for k in r}
        for part in ("scalars", "curves", "stopping"):
            paths |= {f"study.runs[].{part}.{k}" for k in (r[part] or {})}
    for b in doc["budgets"].values():
        paths |= {f"study.budgets.<seed>.{k}" for k in b}
    for part in ("timing", "heads", "lora"):
        paths |= {f"study.{part}.{k}" for k in (doc[part] or {})}
    paths |= {f"study.verdicts[].{k}" for v in doc["verdicts"] for k in v}
    paths |= {f"study.arms.<arm>.<scalar>.{k}" for m in doc["arms"].values() for s in m.values() for k in s}
    paths |= {f"study.curves.<arm>.<curve>.{k}" for m in doc["curves"].values() for c in m.values() for k in c}
    missing = sorted(paths - documented)
    assert not missing, f"not documented in docs/schema.md: {missing}"


def test_the_other_distribution_claim_and_the_papers_25_percent_claim():
    from headsurgeon.studies.aggregate import verdicts

    def row(arm, seed, **scalars):
        return {"arm": arm, "seed": seed, "scalars": scalars}

    runs = [row("stock", s, other_ppl_at_best=50.0, other_ppl_final=50.0) for s in range(3)]
    runs += [row("surgery", s, other_ppl_at_best=52.0 + s, other_ppl_final=53.0) for s in range(3)]
    runs += [row("extended", s, train_best_vs_stock=r) for s, r in enumerate((0.70, 0.72, 0.74))]
    got = {v.claim: v for v in verdicts(runs, level=0.95, n_boot=1000) if v.primary}
    assert got["surgery_other_vs_stock"].outcome == "reversed"  # surgery makes the other distribution worse in every seed
    assert got["surgery_other_vs_stock"].difference.mean == -3.0
    paper = got["extended_train_25pct"]
    assert paper.outcome == "holds" and paper.reference == "0.75 x stock" and paper.difference.mean == pytest.approx(0.03)
    runs[-1]["scalars"]["train_best_vs_stock"] = 0.80  # one seed misses the 25%
    assert {v.claim: v for v in verdicts(runs, level=0.95, n_boot=1000)}["extended_train_25pct"].outcome == "inconclusive"
