"""``build_report``: everything a person needs to judge a surgery run, in one HTML file.

Gathers the run's manifest (plan, configuration, versions, invariant, timing), the perplexity
trajectory, the drift comparison over every evaluation, the figures, and (unless skipped)
side-by-side generations, MLP dormancy and head ablation. Writes ``report.json`` (every number
shown, machine-readable) and ``report.html`` (self-contained: figures are embedded as base64
PNG, no script, no external file) side by side. Works on a finished run and on one still
running (it reports what has been evaluated so far).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from headsurgeon.evaluation.compare import Comparison, compare
from headsurgeon.evaluation.figures import (
    column_figure,
    drift_figure,
    histogram_figure,
    key_indices,
    perplexity_figure,
    png_bytes,
    topology_figure,
    zone_figure,
)
from headsurgeon.evaluation.generation import GenerationSettings
from headsurgeon.evaluation.inputs import load_run
from headsurgeon.evaluation.trajectory import perplexity_trajectory
from headsurgeon.io import atomic_write_text, check_output_file, envelope

from . import pieces
from .options import ReportOptions
from .summary import summarise


@dataclass
class Report:
    """The report's data (``report.json``), its figures as PNG bytes, and where it was written."""

    data: dict
    figures: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # name -> (png, caption)
    study_html: str = ""  # the study section's self-contained HTML (empty: no study given)
    html_path: Path | None = None
    json_path: Path | None = None


def _figures(c: Comparison, traj: dict, best_step: int | None) -> dict[str, tuple[bytes, str]]:
    figs: dict[str, tuple[bytes, str]] = {}
    if traj["steps"]:
        figs["perplexity"] = (png_bytes(perplexity_figure(traj)),
                              "Perplexity per text set at every evaluation; dashed lines: the stock model; dotted: the best step.")
    idx = key_indices(c, best_step)
    extra = {k: "best" for k in idx if best_step is not None and c.steps[k] == best_step}
    figs["topology"] = (png_bytes(topology_figure(c, idx, extra)),
                        "BOS mass of every head (S: BOS-sink, D: DEAD, e: low-entropy); boxes mark the targets.")
    figs["histogram"] = (png_bytes(histogram_figure(c)), f"Distribution of BOS mass over all heads: {c.labels[0]} vs {c.labels[-1]}.")
    figs["drift"] = (png_bytes(drift_figure(c)),
                     f"BOS-mass change per head, {c.labels[-1]} minus {c.labels[0]}; the colour scale is set by the frozen heads.")
    if len(c.labels) > 2:
        figs["zones"] = (png_bytes(zone_figure(c)), "Drift per zone at every evaluation, against the stock model.")
    figs["columns"] = (png_bytes(column_figure(c)), "Drift grouped by head index across layers (targets excluded).")
    return figs


def _run_section(run) -> dict:
    m = run.manifest
    keys = ("status", "fingerprint", "created", "updated", "model", "versions", "config", "corpus", "other_corpus", "plan", "stock",
            "outcome", "timing", "invariant", "best", "trainable_parameters", "resumed")
    return {"dir": str(run.run_dir), **{k: getattr(m, k) for k in keys}}


def build_report(
    run_dir: str | Path,
    *,
    out: str | Path | None = None,
    options: ReportOptions | None = None,
    progress: bool = True,
) -> Report:
    """Build the report of ``run_dir``; write ``out`` (default ``RUN/report.html``) and ``report.json`` beside it."""
    opts = options or ReportOptions()
    start = time.perf_counter()
    run = load_run(run_dir)
    check_output_file(out if out else run.run_dir / "report.html")  # a read-only place fails before any model loads
    notes: list[str] = []
    if not run.finished:
        notes.append(f"the run's status is '{run.manifest.status}': this report shows its evaluations so far")
    traj = perplexity_trajectory(run.manifest)
    comparison = None
    if not run.evals:
        notes.append("the run has no evaluation with a diagnosis yet: no drift comparison")
    elif not (run.manifest.stock or {}).get("diagnosis"):
        notes.append("the run kept no stock diagnosis (diagnose_every_eval was off): no drift comparison and no ablation groups")
    else:
        comparison = compare([run.run_dir], drift_threshold=opts.drift_threshold)
    notes += comparison.notes if comparison else []
    if comparison is not None and not run.plan.frozen_in_zone:
        notes.append("the plan keeps no heads frozen inside its zone, so in-zone frozen drift (late local degradation) "
                     "cannot be measured for this run; plan with a band (headsurgeon plan --band ...) to have such heads")

    stock, why = pieces.stock_folder(run, opts.stock_model)
    if why:
        notes.append(f"stock model not available for generations, dormancy and ablation: {why}")
    models = pieces.checkpoints(run, stock)
    repaired = [k for k in models if k != "stock"]
    pair = {k: models[k] for k in (["stock"] if stock else []) + repaired[-1:]}

    def piece(enabled: bool, name: str, compute) -> dict:
        if not enabled:
            return {"skipped": f"not computed (--no-{name})"}
        if not repaired:
            return {"skipped": "the run has no saved model yet"}
        try:
            return compute()
        except Exception as exc:  # noqa: BLE001 - one failed optional piece must not lose the whole report
            from headsurgeon.errors import HeadsurgeonError

            if not isinstance(exc, (HeadsurgeonError, OSError)):
                raise
            return {"skipped": f"failed: {exc}"}

    placement = {"dtype": opts.dtype, "device": opts.device}
    if opts.device_map is not None:
        from headsurgeon.models.placement import Placement

        placement["placement"] = Placement(device_map=opts.device_map, max_memory=dict(opts.max_memory or {}),
                                           offload_folder=opts.offload_folder)
    gen_settings = GenerationSettings(seed=opts.seed, temperature=opts.temperature, top_p=opts.top_p, max_new_tokens=opts.max_new_tokens)
    prompts = list(opts.generation_prompts) if opts.generation_prompts else None
    generations = piece(opts.generations, "generations",
                        lambda: pieces.generations_piece(run, models, prompts, gen_settings, reuse=opts.reuse, progress=progress,
                                                                  placement=placement))
    dormancy = piece(opts.dormancy, "dormancy", lambda: pieces.dormancy_piece(run, models, opts.dormancy_threshold, reuse=opts.reuse,
                                                                                        placement=placement))
    ablation = piece(opts.ablation, "ablation",
                     lambda: pieces.ablation_piece(run, pair, sequences=opts.ablation_sequences, per_group=opts.ablation_per_group,
                                                   reuse=opts.reuse, progress=progress, placement=placement))
    if opts.ablation and stock is None and "skipped" not in ablation:
        notes.append("head ablation shows the repaired model only (no stock model to compare with)")

    best_step = (run.manifest.best or {}).get("step")
    figures = _figures(comparison, traj, best_step) if comparison else {}
    if not figures and traj["steps"]:
        figures["perplexity"] = (png_bytes(perplexity_figure(traj)), "Perplexity per text set at every evaluation.")
    data = {
        **envelope("report"),
        "options": asdict(opts),
        "run": _run_section(run),
        "history": run.manifest.history,
        "perplexity": traj,
        "comparison": comparison.to_dict() if comparison else None,
        "generations": generations, "dormancy": dormancy, "ablation": ablation,
        "figures": [{"name": k, "caption": v[1]} for k, v in figures.items()],
        "notes": notes,
    }
    study_html = ""
    if opts.study:
        from headsurgeon.studies import StudyResult, study_html_section

        study = StudyResult.load(opts.study)  # a missing or foreign file is a one-line HeadsurgeonError
        data["study"] = {"path": str(opts.study), "status": study.status, "settings": study.settings,
                         "verdicts": [v.to_dict() for v in study.verdicts]}
        study_html = study_html_section(study, heading=False)
    data["summary"] = summarise(data)
    data["elapsed_seconds"] = time.perf_counter() - start
    report = Report(data, figures, study_html)
    html_path = Path(out) if out else run.run_dir / "report.html"
    json_path = html_path.with_suffix(".json")
    from .page import render_html

    atomic_write_text(json_path, json.dumps(data, indent=1))
    atomic_write_text(html_path, render_html(report))
    report.html_path, report.json_path = html_path, json_path
    return report
