"""A whole tiny study end to end: runs, statistics, JSON, figures, HTML, resume, CLI."""

import json
import sys

import pytest
from safetensors.torch import load_file
from study_helpers import tiny_lm

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.studies import ARMS, StudyResult, run_study, study_html_section, study_preset
from headsurgeon.studies.aggregate import CLAIMS, THRESHOLD_CLAIMS

SEEDS = (0, 1, 2)


def _settings(corpus, **kw):
    s = study_preset("tiny")
    return s.with_(training=s.training.with_(corpus=str(corpus)), seeds=SEEDS, **kw)


@pytest.fixture(scope="module")
def study(study_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    return run_study(tiny_lm, out_dir=out, settings=_settings(study_corpus), progress=False), out


def test_study_runs_every_arm_and_seed_and_writes_its_outputs(study):
    st, out = study
    assert st.status == "finished"
    assert [(r["arm"], r["seed"]) for r in st.runs] == [(a, s) for s in SEEDS for a in ARMS]
    assert len(st.timing["trained_now"]) == 5 * len(SEEDS) and not st.timing["reused"]
    doc = json.loads((out / "study.json").read_text())
    assert doc["kind"] == "study" and doc["schema_version"] and doc["settings"]["seeds"] == list(SEEDS)
    assert StudyResult.load(out).to_dict() | {"updated": None} == st.to_dict() | {"updated": None}  # round trip
    for name in ("curves", "endpoints"):
        png = out / "figures" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    page = (out / "study.html").read_text()
    assert page.startswith("<!doctype html>") and page.count("data:image/png;base64,") == 2
    for claim, text, *_ in CLAIMS:
        assert (text in page) == (claim != "surgery_other_vs_stock")  # no other corpus in the tiny preset
    # every figure has mean, spread and a CI over the three seeds
    for arm in ARMS:
        s = st.stat(arm, "heldout_ppl_best")
        assert s.n == 3 and s.ci_low <= s.mean <= s.ci_high and s.std >= 0
    # every claim but the one about the other distribution (the tiny preset has no other corpus)
    assert {v.claim for v in st.claims()} == {c[0] for c in CLAIMS + THRESHOLD_CLAIMS} - {"surgery_other_vs_stock"}
    paper = next(v for v in st.claims() if v.claim == "extended_train_25pct")  # against 0.75 x the seed's stock value
    ratios = {r["seed"]: r["scalars"]["train_best_vs_stock"] for r in st.runs if r["arm"] == "extended"}
    assert paper.reference == "0.75 x stock" and paper.difference.values == pytest.approx([0.75 - ratios[s] for s in SEEDS])
    assert "extended vs 0.75 x stock" in page
    assert all(v.outcome in ("holds", "reversed", "inconclusive") and v.seeds == list(SEEDS) for v in st.claims())
    for v in st.verdicts:  # the verdict follows from its interval, as documented
        d = v.difference
        if d.n < 2 or d.ci_low is None:
            expected = "inconclusive"
        else:
            expected = "holds" if d.ci_low > 0 else "reversed" if d.ci_high < 0 else "inconclusive"
        assert v.outcome == expected, (v.claim, v.metric, d.ci_low, d.ci_high, v.outcome)


def test_arms_are_what_they_claim(study):
    st, out = study
    runs = {(r["arm"], r["seed"]): r for r in st.runs}
    targets = st.heads["targets"]
    for seed in SEEDS:
        rnd = st.heads["random_healthy"][str(seed)]
        assert len(rnd) == len(targets) and not set(rnd) & set(targets)
        assert runs[("random_healthy", seed)]["heads"] == rnd
        assert set(targets) < set(runs[("extended", seed)]["heads"])
        ref = json.loads((out / "runs" / "stock" / f"seed-{seed}" / "reference.json").read_text())
        surgery = json.loads((out / "runs" / "surgery" / f"seed-{seed}" / "manifest.json").read_text())
        no_reinit = json.loads((out / "runs" / "no_reinit" / f"seed-{seed}" / "manifest.json").read_text())
        lora = json.loads((out / "runs" / "lora" / f"seed-{seed}" / "manifest.json").read_text())
        # the stock reference measures on exactly the sequences operate evaluates
        for key in ("train_ppl", "heldout_ppl"):
            assert ref["row"][key] == surgery["stock"][key] == lora["stock"][key]
        # ... and that evaluation is computed once per seed: every arm's stock row is the reference's
        assert surgery["stock"]["reused_from"] == lora["stock"]["reused_from"] == str(out / "runs" / "stock" / f"seed-{seed}" / "reference.json")
        held = load_file(str(out / "runs" / "stock" / f"seed-{seed}" / "heldout.safetensors"))["heldout"]
        assert held.shape[0] == surgery["config"]["eval_sequences"]
        # surgery starts re-initialised; no re-init and LoRA start at the stock model
        assert surgery["history"][0]["heldout_ppl"] != ref["row"]["heldout_ppl"]
        assert no_reinit["history"][0]["heldout_ppl"] == pytest.approx(ref["row"]["heldout_ppl"], rel=1e-6)
        assert not no_reinit["config"]["reinitialise"] and surgery["config"]["reinitialise"]
        assert lora["history"][0]["heldout_ppl"] == ref["row"]["heldout_ppl"]
        # same budget and data for every arm of a seed
        assert {json.loads((out / "runs" / a / f"seed-{seed}" / "manifest.json").read_text())["corpus"]["sha256"]
                for a in ARMS[1:]} == {surgery["corpus"]["sha256"]}
        assert runs[("lora", seed)]["scalars"]["trainable_parameters"] == st.lora["lora_parameters"]
    assert abs(st.lora["lora_parameters"] - st.lora["surgery_parameters"]) <= st.lora["per_rank"] / 2
    assert st.stat("surgery", "trainable_parameters").mean == st.lora["surgery_parameters"]
    assert st.stat("stock", "drift_count").mean == 0
    assert all(r["scalars"]["drift_count"] is not None and r["scalars"]["compute_seconds"] > 0 for r in st.runs if r["arm"] != "stock")


def test_resume_reuses_every_finished_run(study, study_corpus, monkeypatch):
    st, out = study

    def no_training(*a, **k):
        raise AssertionError("a finished run was trained again")

    # surgery and LoRA arms both train through the one run skeleton
    monkeypatch.setattr(sys.modules["headsurgeon.surgery.training_run"], "train_loop", no_training)
    for p in (out / "plans").iterdir():  # an old creation time: a plan written again would show a new one
        p.write_text(json.dumps({**json.loads(p.read_text()), "created": "2000-01-01T00:00:00+00:00"}, indent=1))
    plans = {p.name: p.read_bytes() for p in (out / "plans").iterdir()}
    again = run_study(tiny_lm, out_dir=out, settings=_settings(study_corpus), progress=False, figures=False)
    assert {p.name: p.read_bytes() for p in (out / "plans").iterdir()} == plans  # the same plans are not rewritten
    assert not again.timing["trained_now"] and len(again.timing["reused"]) == 5 * len(SEEDS)
    assert [r["scalars"] for r in again.runs] == [r["scalars"] for r in st.runs]
    assert all(r["reused"] for r in again.runs)


def test_html_section_is_a_self_contained_fragment(study):
    st, _ = study
    html = study_html_section(st)
    assert html.startswith("<section") and html.rstrip().endswith("</section>") and "<html" not in html
    assert "<style>" in html and html.count("<img") == 2 and 'src="data:image/png;base64,' in html
    assert "inconclusive" in html or "holds" in html or "reversed" in html
    # each verdict's own cell (the explanatory note below the table mentions all three words anyway)
    for v in st.verdicts:
        assert f"<td class='{v.outcome}'>" in html
    assert html.count("<td class='holds'>") + html.count("<td class='reversed'>") + html.count("<td class='inconclusive'>") == len(st.verdicts)


def test_markdown_tables(study):
    from headsurgeon.studies import arm_table, verdict_table

    st, _ = study
    table = verdict_table(st).splitlines()
    assert len(table) == 2 + len(st.claims()) and all(line.count("|") == 11 for line in table)
    assert arm_table(st).splitlines()[0] == "| figure | " + " | ".join(ARMS) + " |"
    # counts (steps, parameters) read as whole numbers with separators, not "1300.0000" or "8.847e+05"
    params = next(line for line in arm_table(st).splitlines() if line.startswith("| trainable parameters |"))
    surgery = st.stat("surgery", "trainable_parameters")
    assert f"| {int(surgery.mean):,} ± 0 [" in params and "e+" not in params and ".0000" not in params


def test_cli_study_on_a_saved_tiny_model(study_corpus, tmp_path):
    from headsurgeon.cli.main import run

    folder = tmp_path / "model"
    lm = tiny_lm()
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    out = tmp_path / "cli-study"
    args = ["study", "--model", str(folder), "--preset", "tiny", "--arms", "surgery,lora", "--seeds", "0,1",
            "--corpus", str(study_corpus), "--out", str(out), "--no-progress"]
    assert run(args) == 0
    doc = json.loads((out / "study.json").read_text())
    assert [r["arm"] for r in doc["runs"]] == ["stock", "surgery", "lora"] * 2
    assert (out / "study.html").is_file() and (out / "figures" / "curves.png").is_file()
    assert [v["claim"] for v in doc["verdicts"] if v["primary"]] == ["surgery_vs_lora"]
    assert run(["study", "--preset", "nope", "--out", str(tmp_path / "x")]) == 2


def test_cli_study_stopped_by_sigterm_or_ctrl_c_says_what_it_kept(study_corpus, tmp_path):
    """typer turns a KeyboardInterrupt escaping a command into Exit(130) and drops its message; a
    study stopped mid-run must still name the checkpoint it kept, with 143 for SIGTERM."""
    from forked_cli import run_cli

    folder = tmp_path / "model"
    lm = tiny_lm()
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    for sig, code in (("TERM", 143), ("INT", 130)):
        args = ["study", "--model", str(folder), "--preset", "tiny", "--arms", "surgery", "--seeds", "0",
                "--corpus", str(study_corpus), "--out", str(tmp_path / sig), "--no-progress"]
        proc = run_cli(args, env={"HEADSURGEON_KILL_AT": f"checkpoint-renamed:2:{sig}"})
        assert proc.returncode == code, (sig, proc.returncode, proc.stderr[-2000:])
        assert "checkpoint at step 3" in proc.stderr and "run the same command again" in proc.stderr, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr




def test_run_report_carries_the_study_section(study, tmp_path):
    from headsurgeon.report import ReportOptions, build_report

    st, out = study
    run_dir = out / "runs" / "surgery" / "seed-0"  # the study's surgery runs are ordinary operate folders
    rep = build_report(run_dir, out=tmp_path / "report.html", progress=False,
                       options=ReportOptions(generations=False, dormancy=False, ablation=False, study=str(out)))
    html = rep.html_path.read_text()
    assert 'id="study"' in html and "Controlled study" in html and html.count("data:image/png;base64") > len(rep.figures)
    assert [v["claim"] for v in rep.data["study"]["verdicts"]] == [v.claim for v in st.verdicts]
    with pytest.raises(HeadsurgeonError):
        build_report(run_dir, out=tmp_path / "r2.html", progress=False,
                     options=ReportOptions(generations=False, dormancy=False, ablation=False, study=str(tmp_path / "missing")))


def test_a_study_carried_without_its_models_measures_the_trained_runs(study_corpus, tmp_path):
    """scripts/study-state commits a study without models/: the end measures of a finished
    surgery run are then rebuilt from its last checkpoint's slices - the same numbers as from
    models/final - and with neither there, the study refuses instead of measuring the stock model."""
    import shutil

    settings = _settings(study_corpus, arms=("surgery",)).with_(seeds=(0,))
    out = tmp_path / "study"
    first = run_study(tiny_lm, out_dir=out, settings=settings, progress=False)
    run = out / "runs" / "surgery" / "seed-0"
    shutil.rmtree(run / "models")
    (run / "study-measures.json").unlink()
    for gen in (run / "checkpoints").glob("step-*"):  # as scripts/study-state carries a run that ended at its cap
        (gen / "optimizer.safetensors").unlink()
    again = run_study(tiny_lm, out_dir=out, settings=settings, progress=False)
    assert again.timing["trained_now"] == []  # measured from the slices, not trained again
    keys = ("ablation_delta_final", "ablation_gain", "drift_count", "drift_mean_abs")
    row = {r["arm"]: r for r in first.runs}["surgery"]["scalars"]
    row2 = {r["arm"]: r for r in again.runs}["surgery"]["scalars"]
    assert {k: row2[k] for k in keys} == pytest.approx({k: row[k] for k in keys}, abs=1e-6)
    assert row["ablation_delta_final"] != {r["arm"]: r for r in first.runs}["stock"]["scalars"]["ablation_delta_final"]
    (run / "study-measures.json").unlink()
    last = max((run / "checkpoints").glob("step-*"))
    (last / "pieces.safetensors").write_bytes((last / "pieces.safetensors").read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(HeadsurgeonError, match="no models/final and no intact checkpoint at its last step"):
        run_study(tiny_lm, out_dir=out, settings=settings, progress=False)  # slices not as saved: refused, not measured
    shutil.rmtree(run / "checkpoints")
    with pytest.raises(HeadsurgeonError, match="no models/final and no intact checkpoint at its last step"):
        run_study(tiny_lm, out_dir=out, settings=settings, progress=False)


def test_healthy_panel_shows_arms_with_equal_fractions(study):
    """Healthy fractions are often identical across arms (all 1 or all 0): each arm's line is drawn
    thinner than the one before it, so a later arm never hides an earlier one."""
    import matplotlib.pyplot as plt

    from headsurgeon.studies.figures import curves_figure

    fig = curves_figure(study[0])
    try:
        panel = next(ax for ax in fig.axes if ax.get_title() == "fraction of the arm's heads healthy")
        arms = [ln for ln in panel.get_lines() if ln.get_label() != "stock model"]
        assert len(arms) == len(ARMS) - 1  # every trained arm
        widths = [ln.get_linewidth() for ln in arms]
        assert all(a > b for a, b in zip(widths, widths[1:])), widths
    finally:
        plt.close(fig)


def test_loss_panel_shows_the_mean_since_each_evaluation_and_falls_back_for_older_runs(study):
    """New runs record the windowed mean loss and the panel plots it; a study of runs trained
    before the mean existed gets the last-step loss, titled as such, rather than an empty panel."""
    import copy

    import matplotlib.pyplot as plt

    from headsurgeon.studies.figures import curves_figure

    result = study[0]
    assert all(r["curves"]["train_loss_mean"][1:] and None not in r["curves"]["train_loss_mean"][1:]
               for r in result.runs if r["arm"] != "stock")
    older = copy.deepcopy(result)
    for curves in older.curves.values():
        curves.pop("train_loss_mean", None)
    partly = copy.deepcopy(result)  # one seed of one arm trained before the mean existed
    partly.curves["surgery"]["train_loss_mean"]["n"][-1] -= 1
    for res, title in ((result, "training loss (mean since the previous evaluation, nats)"),
                       (older, "training loss (last step before each evaluation, nats)"),
                       (partly, "training loss (last step before each evaluation, nats)")):
        fig = curves_figure(res)
        try:
            panel = fig.axes[0]
            assert panel.get_title() == title and len(panel.get_lines()) == len(ARMS) - 1
        finally:
            plt.close(fig)
