"""The report of a tiny surgery run: JSON contents, self-contained HTML, skipped and cached pieces,
partial runs, and the compare/report commands."""

import base64
import json
import re
from html import escape

import pytest
from report_helpers import PLAN, tiny_config

from headsurgeon.cli.main import run as cli
from headsurgeon.evaluation import compare, load_run, perplexity_trajectory
from headsurgeon.models import wrap_model
from headsurgeon.models.tiny import tiny_model_and_tokenizer
from headsurgeon.report import ReportOptions, build_report
from headsurgeon.report.sections import visible
from headsurgeon.surgery import operate


def _strip_created(doc):
    return {k: v for k, v in doc.items() if k != "created"}


def test_report_json_holds_every_piece(full_report, tiny_run):
    d = full_report.data
    assert d["kind"] == "report" and d["schema_version"] and d["notes"] == []
    assert json.loads(full_report.json_path.read_text()) == d
    assert full_report.json_path == full_report.html_path.with_suffix(".json")
    # the comparison and trajectory are the library's own, unchanged
    assert _strip_created(d["comparison"]) == _strip_created(compare([tiny_run]).to_dict())
    assert d["perplexity"] == perplexity_trajectory(load_run(tiny_run).manifest)
    assert [i["label"] for i in d["comparison"]["inputs"]] == ["stock", "step 0 (re-init)", "step 2", "step 4"]
    assert d["comparison"]["zone"] == {"targets": ["L0H1", "L1H2"], "frozen_in_zone": ["L1H3"]}
    assert d["run"]["invariant"]["final"]["held"] and d["run"]["status"] == "finished"
    # frozen heads of the first target's layer (0) read an unchanged input: no drift at all, ever
    c = compare([tiny_run])
    for j in range(1, len(c.labels)):
        assert (c.delta(j)[0, [0, 2, 3]] == 0).all()
    # optional pieces: stock vs repaired checkpoints
    gen = d["generations"]
    labels = list(gen["texts"])
    assert labels[0] == "stock" and len(labels) in (2, 3) and all(len(v) == 5 for v in gen["texts"].values())
    assert d["dormancy"]["identical"] is True and set(d["dormancy"]["models"]) == set(labels)
    ab = d["ablation"]
    assert list(ab["models"]) == ["stock", labels[-1]]
    assert ab["groups"]["targets"] == {"size": 2, "sampled": ["L0H1", "L1H2"]}
    assert ab["settings"]["corpus_matches_run"] is True and ab["settings"]["split"] == "heldout"
    assert [f["name"] for f in d["figures"]] == ["perplexity", "topology", "histogram", "drift", "zones", "columns"]
    html = full_report.html_path.read_text(encoding="utf-8")
    # the report's numbers: lr in scientific notation, what decided the number of steps, no empty header
    assert "0.000000" not in html and f"{d['history'][1]['lr']:.2e}" in html
    assert "max_steps = 4 (epochs = 3 was not used)" in html and "<th></th>" not in html


def test_html_is_self_contained_and_shows_the_numbers(full_report):
    html = full_report.html_path.read_text(encoding="utf-8")
    imgs = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([^"]+)"', html)
    assert len(imgs) == len(full_report.figures) == 6
    for b64 in imgs:
        png = base64.b64decode(b64)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert not re.search(r'(src|href)="(https?:|//|file:)', html) and "<script" not in html and "<link" not in html
    assert html.count("<table") >= 12
    d = full_report.data
    stock_ppl = d["perplexity"]["points"]["stock"]["heldout"]
    assert f"{stock_ppl:.3f}" in html
    for z in d["comparison"]["final"]["zones"].values():
        assert f"{z['mean_abs_delta']:.4f}" in html
    for texts in d["generations"]["texts"].values():
        for text in texts:
            assert escape(visible(text)) in html
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f]", html)
    for section in ("plan", "perplexity", "topology", "drift", "trajectory", "columns", "generations", "dormancy", "ablation", "invariant", "setup"):
        assert f'<section id="{section}">' in html


def test_fast_report_skips_models_and_cache_is_reused(tiny_run, tmp_path):
    fast = build_report(tiny_run, out=tmp_path / "fast.html",
                        options=ReportOptions(generations=False, dormancy=False, ablation=False), progress=False)
    assert fast.data["generations"] == {"skipped": "not computed (--no-generations)"}
    assert "not computed" in fast.html_path.read_text()
    first = build_report(tiny_run, out=tmp_path / "a.html", options=ReportOptions(generations=False, ablation=False, reuse=False), progress=False)
    second = build_report(tiny_run, out=tmp_path / "b.html", options=ReportOptions(generations=False, ablation=False), progress=False)
    assert "cached" not in first.data["dormancy"] and second.data["dormancy"]["cached"].endswith("evaluation/dormancy.json")
    assert {k: v for k, v in second.data["dormancy"].items() if k != "cached"} == first.data["dormancy"]
    other = build_report(tiny_run, out=tmp_path / "c.html", options=ReportOptions(generations=False, ablation=False, dormancy_threshold=0.5),
                         progress=False)
    assert "cached" not in other.data["dormancy"]  # other settings: computed again


def test_partial_run_of_an_in_memory_model(tmp_path, text_corpus):
    lm = wrap_model(*tiny_model_and_tokenizer("llama", seed=0))
    with pytest.raises(KeyboardInterrupt):
        operate(lm, PLAN, out_dir=tmp_path / "run", config=tiny_config(text_corpus), progress=False, stop_after_step=2)
    rep = build_report(tmp_path / "run", options=ReportOptions(generations=False), progress=False)
    d = rep.data
    assert d["run"]["status"] == "running" and any("status is 'running'" in n for n in d["notes"])
    assert any("in-memory model" in n for n in d["notes"]) and any("repaired model only" in n for n in d["notes"])
    assert list(d["ablation"]["models"]) == [f"best (step {d['run']['best']['step']})"]
    assert list(d["dormancy"]["models"]) == list(d["ablation"]["models"])
    assert d["perplexity"]["points"]["latest"]["step"] == 2
    html = rep.html_path.read_text()
    assert "Not checked yet" in html and rep.html_path == tmp_path / "run" / "report.html"


def test_cli_compare_and_report(tiny_run, tmp_path, capsys):
    assert cli(["compare", str(tiny_run), "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "Drift per zone" in out and "recoveries" in out and "Column drift" in out
    assert json.loads((tmp_path / "cmp" / "comparison.json").read_text())["kind"] == "comparison"
    stock = tiny_run / "diagnoses" / "stock.json"
    last = sorted((tiny_run / "diagnoses").glob("step-*.json"))[-1]
    assert cli(["compare", str(stock), str(last), "--label", "before", "--label", "after", "--out", str(tmp_path / "c2")]) == 0
    assert "after against before" in capsys.readouterr().out.replace("\n", " ")
    PLAN.save(tmp_path / "plan.json")
    assert cli(["compare", str(stock), str(last), "--zone", str(tmp_path / "plan.json"), "--drift-threshold", "0.001",
                "--out", str(tmp_path / "c3")]) == 0
    doc = json.loads((tmp_path / "c3" / "comparison.json").read_text())
    assert doc["settings"]["zone_source"].endswith("plan.json") and doc["zone"]["frozen_in_zone"] == ["L1H3"]
    assert doc["settings"]["drift_threshold"] == 0.001
    capsys.readouterr()
    assert cli(["report", str(tiny_run), "--fast", "--out", str(tmp_path / "r.html"), "--no-progress"]) == 0
    assert (tmp_path / "r.html").is_file() and (tmp_path / "r.json").is_file()
    assert cli(["compare", str(tmp_path / "missing.json"), str(stock)]) == 2
    assert "error: " in capsys.readouterr().err
    assert cli(["report", str(tmp_path)]) == 2
    assert "not a surgery run folder" in capsys.readouterr().err


def test_report_of_hand_made_run_shows_known_numbers(tmp_path, monkeypatch):
    """No model at all (--fast): the drift numbers of tests/evaluation's hand-made run reach the page."""
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "evaluation"))
    from eval_helpers import AFTER, BEFORE, MID, diag, fake_run

    run = fake_run(tmp_path / "run", [diag(BEFORE), diag(BEFORE), diag(MID), diag(AFTER)])
    rep = build_report(run, options=ReportOptions(generations=False, dormancy=False, ablation=False), progress=False)
    z = rep.data["comparison"]["final"]["zones"]
    assert (z["outside_zone"]["drifting"], z["outside_zone"]["mean_abs_delta"]) == (3, 25 / 512)
    assert (z["frozen_in_zone"]["drifting"], z["frozen_in_zone"]["mean_abs_delta"]) == (1, 0.0625)
    html = rep.html_path.read_text(encoding="utf-8")
    assert "<td>outside the zone</td><td class=\"n\">8</td><td class=\"n\">3</td><td class=\"n\">37.5%</td><td class=\"n\">0.0488</td>" in html
    assert "Recoveries: collapsed before, not collapsed after (3)" in html and "Iatrogenic collapses: not collapsed before, collapsed after (1)" in html
    assert "<td>L2H2</td><td>outside the zone</td><td>healthy</td><td>BOS-sink</td>" in html  # one spelling of the classes
    assert "bos_sink" not in html.split("<section")[1:][0] and "<th></th>" not in html
    # without a stock diagnosis there is no comparison, but still a report
    m = json.loads((run / "manifest.json").read_text())
    m["stock"].pop("diagnosis")
    (run / "manifest.json").write_text(json.dumps(m))
    rep = build_report(run, options=ReportOptions(generations=False, dormancy=False, ablation=False), progress=False)
    assert rep.data["comparison"] is None and any("no stock diagnosis" in n for n in rep.data["notes"])
    assert "fig-perplexity" in rep.html_path.read_text(encoding="utf-8")


def test_summary_reports_bad_changes_as_bad(full_report):
    """A perplexity that rose is 'worse' with a positive percent; fewer collapsed heads is 'better'."""
    import copy

    from headsurgeon.report.summary import summarise

    d = copy.deepcopy(full_report.data)
    best = d["perplexity"]["points"]["best"]
    best["other"] = d["perplexity"]["points"]["stock"]["other"] * 1.044
    s = summarise(d)
    other = next(r for r in s["rows"] if r["key"] == "other")["points"][0]
    assert other["verdict"] == "worse" and abs(other["change_percent"] - 4.4) < 1e-9
    assert "other distribution went from" in s["what_happened"] and "+4.4%, worse" in s["what_happened"]
    d["perplexity"]["sets"] = [x for x in d["perplexity"]["sets"] if x != "other"]
    s = summarise(d)
    assert next(r for r in s["rows"] if r["key"] == "other")["missing"]
    assert "other distribution was not measured" in s["what_happened"]
    assert "headsurgeon study" in s["what_it_cannot_show"]
