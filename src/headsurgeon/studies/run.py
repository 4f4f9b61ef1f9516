"""``run_study``: run every (seed, arm), measure, aggregate, and write ``study.json``.

Folder layout (everything resumable; re-running the same command continues where it stopped)::

    OUT/stock-diagnosis.json          the stock model's diagnosis that chose the heads
    OUT/plans/<arm>-seed<s>.json      the plan each arm trained
    OUT/runs/stock/seed-<s>/          reference.json (stock perplexities, ablation of every arm's heads)
                                      and heldout.safetensors (the seed's held-out evaluation rows)
    OUT/runs/<arm>/seed-<s>/          an ``operate`` run folder (the LoRA arm: a ``lora_run`` folder)
                                      plus study-measures.json (ablation and drift at the end)
    OUT/study.json, OUT/study.html, OUT/figures/*.png

A finished run is reused (``operate`` and :func:`.lora_run.train_lora` return finished runs as
they are; an interrupted one resumes from its last checkpoint). Runs go seed by seed, so a study
stopped half way already holds complete paired comparisons for its first seeds; ``study.json``
is rewritten (status ``running``) after every run.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from safetensors.torch import load_file, save

from headsurgeon.diagnosis import COLLAPSED, Diagnosis, diagnose_encoded
from headsurgeon.errors import HeadsurgeonError
from headsurgeon.io import atomic_write_bytes, ensure_output_dir, read_document, write_document
from headsurgeon.measurements import ablation_effects
from headsurgeon.models import LoadedModel, load_model
from headsurgeon.models.preflight import model_facts
from headsurgeon.surgery.preflight import check_sequence_length
from headsurgeon.surgery import SurgeryConfig, SurgeryPlan, operate
from headsurgeon.surgery.data import diagnosis_prompts, run_data
from headsurgeon.surgery.folder import RunFolder
from headsurgeon.surgery.manifest import load_manifest
from headsurgeon.surgery.monitor import evaluate_state

from .aggregate import arm_curves, arm_stats, verdicts
from .arms import arm_plans, extended_columns
from .lora_run import load_lora_weights, train_lora
from .measure import end_measures, final_diagnosis, heads_of, summarize_run, summarize_stock
from .result import StudyResult
from .settings import StudySettings, study_preset

ModelSource = str | None | Callable[[], LoadedModel]


def _factory(model: ModelSource) -> Callable[[], LoadedModel]:
    if callable(model):
        return model
    return lambda: load_model(model, progress=False)


def _say(msg: str, progress: bool) -> None:
    if progress:
        print(f"[study {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _stock_diagnosis(loaded: LoadedModel, out: Path) -> Diagnosis:
    path = out / "stock-diagnosis.json"
    if path.is_file():
        diag = Diagnosis.load(path)
        if tuple(diag.shape) != (loaded.adapter.num_layers, loaded.adapter.num_heads):
            raise HeadsurgeonError(f"{out} holds a study of another model; choose a new --out")
        return diag
    diag = diagnose_encoded(loaded, diagnosis_prompts(loaded), batch_size=4, progress=False)
    diag.save(path)
    return diag


def _stock_reference(factory, cfg: SurgeryConfig, plans: dict[str, SurgeryPlan], diag: Diagnosis, folder: Path) -> dict:
    """Stock perplexities on the seed's evaluation sets and the stock ablation of every arm's heads."""
    heads = {arm: heads_of(p.to_dict()) for arm, p in plans.items()}
    key = {"config": cfg.to_dict(), "heads": {a: [str(h) for h in hs] for a, hs in heads.items()}}
    path = folder / "reference.json"
    if path.is_file():
        doc = read_document(path, kind="study_stock_reference")
        if doc["key"] == key and (folder / "heldout.safetensors").is_file():
            return {**doc, "reused": True}
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    loaded = factory()
    data = run_data(loaded, cfg, progress=False)
    # No re-diagnosis: the stock model on the same prompts *is* the study's stock diagnosis.
    row, _ = evaluate_state(loaded, data.eval_sets, None, plans["surgery"], batch_size=cfg.eval_batch_size)
    targets = heads["surgery"]
    row["targets_healthy"] = sum(diag.classes[h.layer, h.head] not in COLLAPSED for h in targets)
    row["targets_collapsed"] = [str(h) for h in targets if diag.classes[h.layer, h.head] in COLLAPSED]
    heldout = data.eval_sets["heldout"]
    unique = {tuple(hs): hs for hs in heads.values()}  # surgery, no_reinit and lora share their heads: ablate once
    ab = ablation_effects(loaded, heldout, {str(i): hs for i, hs in enumerate(unique.values())}, batch_size=cfg.eval_batch_size)
    index = {k: str(i) for i, k in enumerate(unique)}
    ab.delta = {arm: ab.delta[index[tuple(hs)]] for arm, hs in heads.items()}
    atomic_write_bytes(folder / "heldout.safetensors", save({"heldout": heldout.contiguous()}))
    doc = {"key": key, "row": row, "ablation": ab.delta, "base_loss": ab.base_loss, "ablation_tokens": ab.tokens,
           "seconds": time.perf_counter() - start, "dir": str(folder)}
    write_document(path, "study_stock_reference", doc)
    return {**doc, "reused": False}


def _load_final_weights(loaded: LoadedModel, run_dir: Path) -> None:
    state = {}
    for f in sorted(RunFolder(run_dir).model("final").glob("*.safetensors")):
        state.update(load_file(str(f)))
    result = loaded.model.load_state_dict(state, strict=False)
    if result.unexpected_keys:
        raise HeadsurgeonError(f"{RunFolder(run_dir).model('final')} does not fit this model ({result.unexpected_keys[0]}); choose a new --out")


def _training_run(arm: str, factory, plan: SurgeryPlan, cfg: SurgeryConfig, run_dir: Path, *, reference: dict,
                  stock_diag: Diagnosis, heldout, settings: StudySettings, progress: bool) -> tuple[dict, dict, bool]:
    """Train one (arm, seed) unless finished; measure it unless measured. Returns (manifest, measures, reused)."""
    folder = RunFolder(run_dir)
    meas_path = folder.study_measures
    kind = "lora_run" if arm == "lora" else "surgery_run"
    before = load_manifest(folder, kind=kind).to_dict() if folder.holds_run() else None
    finished_before = before is not None and before.get("status") == "finished"
    if finished_before and meas_path.is_file():
        meas = read_document(meas_path, kind="study_run_measures")
        if meas.get("fingerprint") == before["fingerprint"]:
            return before, meas, True
    loaded = factory()
    if arm == "lora":
        res = train_lora(loaded, plan, out_dir=run_dir, config=cfg, scale=settings.lora_scale, progress=progress)
        if finished_before:
            load_lora_weights(loaded, run_dir, res.manifest)
    else:
        res = operate(loaded, plan, out_dir=run_dir, config=cfg, progress=progress)
        if finished_before:
            _load_final_weights(loaded, run_dir)
    heads = heads_of(res.manifest["plan"])
    meas = end_measures(loaded, heldout, heads, stock_delta=reference["ablation"][arm], stock_diag=stock_diag,
                        final_diag=final_diagnosis(run_dir, res.manifest), threshold=settings.drift_threshold,
                        batch_size=cfg.eval_batch_size)
    meas["fingerprint"] = res.manifest["fingerprint"]
    write_document(meas_path, "study_run_measures", meas)
    return res.manifest, meas, finished_before


def _assemble(model: dict, settings: StudySettings, heads: dict, lora: dict | None, runs: list[dict], *, status: str,
              timing: dict, out: Path) -> StudyResult:
    level, n_boot = settings.ci_level, settings.n_boot
    return StudyResult(model=model, settings=settings.to_dict(), heads=heads, lora=lora, runs=runs,
                       arms=arm_stats(runs, level=level, n_boot=n_boot), curves=arm_curves(runs),
                       verdicts=verdicts(runs, level=level, n_boot=n_boot), status=status, timing=timing, out_dir=str(out))


def run_study(model: ModelSource = None, *, out_dir: str | Path, settings: StudySettings | None = None,
              progress: bool = True, figures: bool = True) -> StudyResult:
    """Run (or resume) a controlled study; see the module docstring for the folder it writes.

    ``model`` is a model spec for :func:`~headsurgeon.models.load_model` (``None``: the default
    SmolLM2-135M) or a function returning a fresh :class:`LoadedModel` (every run needs an
    untouched copy: surgery changes weights in place). ``settings.threads`` sets torch's CPU
    threads for the duration (restored afterwards).
    """
    settings = settings or study_preset("smollm2")
    if settings.threads is None:
        return _run_study(model, out_dir=out_dir, settings=settings, progress=progress, figures=figures)
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        return _run_study(model, out_dir=out_dir, settings=settings, progress=progress, figures=figures)
    finally:
        torch.set_num_threads(before)


#: Files that mark a folder as another command's output; a study never writes into one.
FOREIGN_OUTPUTS = {"manifest.json": "a surgery run", "diagnosis.json": "a diagnosis", "extremes.json": "an extremes study",
                   "report.json": "a report", "toy_run.json": "a toy run", "toy_compare.json": "a toy comparison"}


def _check_study_folder(out: Path) -> None:
    for name, what in FOREIGN_OUTPUTS.items():
        if (out / name).is_file():
            raise HeadsurgeonError(f"{out} holds {what} ({name}), not a study; choose a new --out for the study")


def _run_study(model: ModelSource, *, out_dir, settings: StudySettings, progress: bool, figures: bool) -> StudyResult:
    out = ensure_output_dir(out_dir)
    _check_study_folder(out)
    if not callable(model):  # cheap checks from config.json before any weight is read
        facts = model_facts(model)
        if facts is not None:
            check_sequence_length(settings.training.seq_len, facts.max_positions, facts.folder.name)
    factory = _factory(model)
    start = time.perf_counter()
    loaded = factory()
    check_sequence_length(settings.training.seq_len, loaded.adapter.max_positions, loaded.name)
    description = loaded.describe()
    diag = _stock_diagnosis(loaded, out)
    del loaded
    runs: list[dict] = []
    heads: dict = {"random_healthy": {}}
    lora_info = None
    trained, reused = [], []
    for seed in settings.seeds:
        cfg = settings.training.with_(seed=seed)
        plans = arm_plans(diag, settings, seed)
        heads["targets"] = [str(h) for h in plans["surgery"].targets]
        heads["extended"] = [str(h) for h in plans["extended"].targets]
        heads["extended_columns"] = list(extended_columns(diag, plans["surgery"].targets, settings.extra_columns))
        heads["random_healthy"][str(seed)] = [str(h) for h in plans["random_healthy"].targets]
        for arm in settings.training_arms:
            plans[arm].save(out / "plans" / f"{arm}-seed{seed}.json")
        _say(f"seed {seed}: stock reference", progress)
        ref = _stock_reference(factory, cfg, plans, diag, out / "runs" / "stock" / f"seed-{seed}")
        runs.append(summarize_stock(seed, ref, heads["targets"]))
        heldout = load_file(str(out / "runs" / "stock" / f"seed-{seed}" / "heldout.safetensors"))["heldout"]
        for arm in settings.training_arms:
            arm_cfg = cfg.with_(reinitialise=False) if arm == "no_reinit" else cfg
            run_dir = out / "runs" / arm / f"seed-{seed}"
            _say(f"seed {seed}: {arm} -> {run_dir}", progress)
            manifest, meas, was_reused = _training_run(arm, factory, plans[arm], arm_cfg, run_dir, reference=ref, stock_diag=diag,
                                                       heldout=heldout, settings=settings, progress=progress)
            (reused if was_reused else trained).append(f"{arm}/seed-{seed}")
            runs.append(summarize_run(arm, seed, manifest, meas, run_dir=str(run_dir), reused=was_reused))
            if arm == "lora":
                lora_info = manifest.get("lora")
            timing = {"wall_seconds": time.perf_counter() - start, "trained_now": trained, "reused": reused}
            _assemble(description, settings, heads, lora_info, runs, status="running", timing=timing, out=out).save(out / "study.json")
    timing = {"wall_seconds": time.perf_counter() - start, "trained_now": trained, "reused": reused}
    study = _assemble(description, settings, heads, lora_info, runs, status="finished", timing=timing, out=out)
    study.save(out / "study.json")
    if figures:
        from .html import write_study_html

        write_study_html(study, out / "study.html", figures_dir=out / "figures")
    _say(f"finished: {out / 'study.json'}", progress)
    return study
