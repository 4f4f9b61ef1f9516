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

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from safetensors.torch import load_file, save

from headsurgeon.diagnosis import Diagnosis, diagnose_encoded
from headsurgeon.errors import HeadsurgeonError
from headsurgeon.io import atomic_write_bytes, ensure_output_dir, read_document, write_document
from headsurgeon.measurements import ablation_effects
from headsurgeon.models import LoadedModel, load_model
from headsurgeon.models.preflight import model_facts
from headsurgeon.surgery import SurgeryConfig, SurgeryPlan, operate
from headsurgeon.surgery.data import RunData, diagnosis_prompts, run_data
from headsurgeon.surgery.folder import RunFolder
from headsurgeon.surgery.manifest import RunManifest, load_manifest
from headsurgeon.surgery.monitor import diagnosis_fields, evaluate_state
from headsurgeon.surgery.preflight import check_sequence_length
from headsurgeon.surgery.training_run import StockEvaluation, will_extend

from .aggregate import arm_curves, arm_stats, verdicts
from .arms import arm_plans, extended_columns, target_plan
from .lora_run import load_lora_weights, train_lora
from .measure import end_measures, final_diagnosis, heads_of, summarize_run, summarize_stock
from .result import StudyResult
from .settings import StudySettings, study_preset

ModelSource = str | None | Callable[[], LoadedModel]


def _factory(model: ModelSource, loading: dict) -> Callable[[], LoadedModel]:
    if callable(model):
        return model
    return lambda: load_model(model, progress=False, **loading)


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


def _heads_key(heads) -> str:
    return ",".join(str(h) for h in heads)


def _stock_reference(loaded_data: Callable[[], tuple[LoadedModel, RunData]], cfg: SurgeryConfig, targets: SurgeryPlan,
                     arm_heads: dict[str, list], diag: Diagnosis, folder: Path) -> dict:
    """The seed's stock evaluation: perplexities on its evaluation sets (computed once and reused
    as every arm's stock row) and the stock ablation of each chosen arm's heads.

    Keyed by the training settings only; ablations of head sets not measured yet (an arm added
    later) are computed and added, the rest reused.
    """
    key = {"config": cfg.with_(reinitialise=True).to_dict()}
    path = folder / "reference.json"
    doc = None
    if path.is_file() and (folder / "heldout.safetensors").is_file():
        doc = read_document(path, kind="study_stock_reference")
        if doc.get("key") != key or "ablation_by_heads" not in doc:
            doc = None
    wanted = {_heads_key(hs): hs for hs in [targets.targets, *arm_heads.values()]}
    reused = doc is not None
    start = time.perf_counter()
    if doc is None:
        folder.mkdir(parents=True, exist_ok=True)
        loaded, data = loaded_data()
        # No re-diagnosis: the stock model on the same prompts *is* the study's stock diagnosis.
        row, _ = evaluate_state(loaded, data.eval_sets, None, targets, batch_size=cfg.eval_batch_size)
        if data.prompts:
            row.update(diagnosis_fields(diag, targets))
        heldout = data.eval_sets["heldout"]
        atomic_write_bytes(folder / "heldout.safetensors", save({"heldout": heldout.contiguous()}))
        doc = {"key": key, "row": row, "ablation_by_heads": {}, "seconds": 0.0, "dir": str(folder)}
    missing = {k: hs for k, hs in wanted.items() if k not in doc["ablation_by_heads"]}
    if missing:
        loaded, _ = loaded_data()
        heldout = load_file(str(folder / "heldout.safetensors"))["heldout"]
        ab = ablation_effects(loaded, heldout, missing, batch_size=cfg.eval_batch_size)
        doc["ablation_by_heads"].update(ab.delta)
        doc["base_loss"], doc["ablation_tokens"] = ab.base_loss, ab.tokens
    if missing or not reused:
        doc["seconds"] = doc.get("seconds", 0.0) + time.perf_counter() - start
        write_document(path, "study_stock_reference", doc)
    ablation = {arm: doc["ablation_by_heads"][_heads_key(hs)] for arm, hs in arm_heads.items()}
    ablation["targets"] = doc["ablation_by_heads"][_heads_key(targets.targets)]
    return {**doc, "ablation": ablation, "reused": reused and not missing}


def _load_final_weights(loaded: LoadedModel, run_dir: Path, manifest: dict) -> None:
    """The surgery run's final weights into ``loaded``: from ``models/final``, or, in a folder
    carried to another machine without its models (``scripts/study-state``), from the trained
    slices of the checkpoint at the run's last step. Never silently the stock weights."""
    folder = RunFolder(run_dir)
    files = sorted(folder.model("final").glob("*.safetensors"))
    if not files:
        _final_slices_from_checkpoint(loaded, folder, manifest)
        return
    state = {}
    for f in files:
        state.update(load_file(str(f)))
    result = loaded.model.load_state_dict(state, strict=False)
    if result.unexpected_keys:
        raise HeadsurgeonError(f"{folder.model('final')} does not fit this model ({result.unexpected_keys[0]}); choose a new --out")


def _final_slices_from_checkpoint(loaded: LoadedModel, folder: RunFolder, manifest: dict) -> None:
    from headsurgeon.surgery import SurgicalSlices
    from headsurgeon.surgery.checkpoint import load_final_pieces

    steps = (manifest.get("outcome") or {}).get("steps")
    pieces = load_final_pieces(folder.checkpoints, steps) if isinstance(steps, int) else None
    if pieces is None:
        raise HeadsurgeonError(f"{folder.root} has no models/final and no intact checkpoint at its last step ({steps}) to rebuild it from; "
                               f"delete {folder.root} to train this arm again")
    cfg = SurgeryConfig.from_dict(manifest["config"])
    slices = SurgicalSlices(loaded.adapter, SurgeryPlan.from_dict(manifest["plan"]), seed=cfg.seed, reinitialise=cfg.reinitialise)
    slices.install()
    slices.load_pieces(pieces)
    slices.merge()


def _stored(arm: str, run_dir: Path) -> dict | None:
    folder = RunFolder(run_dir)
    return load_manifest(folder, kind="lora_run" if arm == "lora" else "surgery_run").to_dict() if folder.holds_run() else None


def _train_arm(arm: str, loaded_data, plan: SurgeryPlan, cfg: SurgeryConfig, run_dir: Path, *, stock: StockEvaluation,
               settings: StudySettings, budget: int | None, progress: bool) -> tuple[dict, bool]:
    """Train one (arm, seed) unless it is finished (and, with ``budget``, continued that far).

    Returns (manifest, whether anything was trained now)."""
    before = _stored(arm, run_dir)
    if before is not None and before.get("status") == "finished" and not will_extend(RunManifest.from_dict(before), budget):
        return before, False
    loaded, data = loaded_data(fresh=True)
    kw = {"out_dir": run_dir, "config": cfg, "progress": progress, "data": data, "stock": stock, "budget_steps": budget}
    res = train_lora(loaded, plan, scale=settings.lora_scale, **kw) if arm == "lora" else operate(loaded, plan, **kw)
    return res.manifest, True


def _measure_arm(arm: str, factory, manifest: dict, run_dir: Path, *, reference: dict, stock_diag: Diagnosis, heldout,
                 settings: StudySettings, cfg: SurgeryConfig) -> dict:
    """End-of-run measures (ablation, drift) of a finished run, reused while the run is unchanged."""
    folder = RunFolder(run_dir)
    steps = (manifest.get("outcome") or {}).get("steps")
    if folder.study_measures.is_file():
        meas = read_document(folder.study_measures, kind="study_run_measures")
        if meas.get("fingerprint") == manifest["fingerprint"] and meas.get("steps") == steps:
            return meas
    loaded = factory()
    if arm == "lora":
        load_lora_weights(loaded, run_dir, manifest)
    else:
        _load_final_weights(loaded, run_dir, manifest)
    heads = heads_of(manifest["plan"])
    meas = end_measures(loaded, heldout, heads, stock_delta=reference["ablation"][arm], stock_diag=stock_diag,
                        final_diag=final_diagnosis(run_dir, manifest), threshold=settings.drift_threshold,
                        batch_size=cfg.eval_batch_size)
    meas["fingerprint"], meas["steps"] = manifest["fingerprint"], steps
    write_document(folder.study_measures, "study_run_measures", meas)
    return meas


def seed_budget(manifests: dict[str, dict]) -> dict:
    """The seed's token budget: the largest number of steps any arm needed (where it stopped on its
    own, by patience or at the cap), in steps and tokens, and which arms set it."""
    stops = {arm: (m.get("stopping") or {}).get("step", (m.get("outcome") or {}).get("steps")) for arm, m in manifests.items()}
    steps = max(stops.values())
    per_step = {arm: m["outcome"]["tokens"] / max(m["outcome"]["steps"], 1) for arm, m in manifests.items()}
    return {"steps": steps, "tokens": int(round(steps * max(per_step.values()))), "set_by": sorted(a for a, s in stops.items() if s == steps),
            "stop_steps": stops}


def _assemble(model: dict, settings: StudySettings, heads: dict, lora: dict | None, runs: list[dict], *, status: str,
              timing: dict, out: Path, budgets: dict) -> StudyResult:
    level, n_boot = settings.ci_level, settings.n_boot
    return StudyResult(model=model, settings=settings.to_dict(), heads=heads, lora=lora, runs=runs, budgets=budgets,
                       arms=arm_stats(runs, level=level, n_boot=n_boot), curves=arm_curves(runs),
                       verdicts=verdicts(runs, level=level, n_boot=n_boot), status=status, timing=timing, out_dir=str(out))


def _save_plan_unless_unchanged(plan: SurgeryPlan, path: Path) -> None:
    """Write an arm's plan, unless the file already holds the same plan: a study run again (to
    resume, or to rewrite its tables) keeps the file and its creation time, so a saved study
    state does not change for nothing."""

    def body(doc: dict) -> dict:
        return {k: v for k, v in doc.items() if k != "created"}

    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None  # unreadable: written again below
        if isinstance(old, dict) and body(old) == body(json.loads(json.dumps(plan.to_dict()))):
            return
    plan.save(path)


def run_study(model: ModelSource = None, *, out_dir: str | Path, settings: StudySettings | None = None,
              progress: bool = True, figures: bool = True, device: str = "cpu", dtype: str = "fp32",
              placement=None) -> StudyResult:
    """Run (or resume) a controlled study; see the module docstring for the folder it writes.

    ``model`` is a model spec for :func:`~headsurgeon.models.load_model` (``None``: the default
    SmolLM2-135M) or a function returning a fresh :class:`LoadedModel` (every run needs an
    untouched copy: surgery changes weights in place). ``settings.threads`` sets torch's CPU
    threads for the duration (restored afterwards). ``device``, ``dtype`` and ``placement``
    (a :class:`~headsurgeon.models.placement.Placement`) load a spec through
    :func:`~headsurgeon.models.load_model` for every run; a run's dtype is part of its identity,
    so a study folder continued in another dtype is refused at its first run.
    """
    settings = settings or study_preset("smollm2")
    from headsurgeon.surgery.preflight import check_training_dtype

    check_training_dtype(dtype, settings.training)
    loading = {"device": device, "dtype": dtype, "placement": placement}
    if settings.threads is None:
        return _run_study(model, out_dir=out_dir, settings=settings, progress=progress, figures=figures, loading=loading)
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        return _run_study(model, out_dir=out_dir, settings=settings, progress=progress, figures=figures, loading=loading)
    finally:
        torch.set_num_threads(before)


#: Files that mark a folder as another command's output; a study never writes into one.
FOREIGN_OUTPUTS = {"manifest.json": "a surgery run", "diagnosis.json": "a diagnosis", "extremes.json": "an extremes study",
                   "report.json": "a report", "toy_run.json": "a toy run", "toy_compare.json": "a toy comparison"}


def _check_study_folder(out: Path) -> None:
    for name, what in FOREIGN_OUTPUTS.items():
        if (out / name).is_file():
            raise HeadsurgeonError(f"{out} holds {what} ({name}), not a study; choose a new --out for the study")


def _run_study(model: ModelSource, *, out_dir, settings: StudySettings, progress: bool, figures: bool, loading: dict) -> StudyResult:
    out = ensure_output_dir(out_dir)
    _check_study_folder(out)
    if not callable(model):  # cheap checks from config.json before any weight is read
        facts = model_facts(model)
        if facts is not None:
            check_sequence_length(settings.training.seq_len, facts.max_positions, facts.folder.name)
    factory = _factory(model, loading)
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
    budgets: dict[str, dict] = {}

    def checkpoint_study() -> None:
        timing = {"wall_seconds": time.perf_counter() - start, "trained_now": trained, "reused": reused}
        _assemble(description, settings, heads, lora_info, runs, status="running", timing=timing, out=out,
                  budgets=budgets).save(out / "study.json")

    for seed in settings.seeds:
        cfg = settings.training.with_(seed=seed)
        targets = target_plan(diag, settings)
        plans = arm_plans(diag, settings, seed)
        heads["targets"] = [str(h) for h in targets.targets]
        if "extended" in plans:
            heads["extended"] = [str(h) for h in plans["extended"].targets]
            heads["extended_columns"] = list(extended_columns(diag, targets.targets, settings.extra_columns))
        if "random_healthy" in plans:
            heads["random_healthy"][str(seed)] = [str(h) for h in plans["random_healthy"].targets]
        for arm, plan in plans.items():
            _save_plan_unless_unchanged(plan, out / "plans" / f"{arm}-seed{seed}.json")
        shared: dict = {}

        def loaded_data(fresh: bool = False, cfg=cfg, shared=shared):
            """A model (a fresh copy when ``fresh``) and the seed's data, tokenised once per seed."""
            if fresh:
                loaded = factory()  # every training run needs an untouched copy
            else:
                if "stock" not in shared:  # the stock reference's copy, never trained
                    shared["stock"] = factory()
                loaded = shared["stock"]
            if "data" not in shared:
                shared["data"] = run_data(loaded, cfg, progress=False)
            return loaded, shared["data"]

        stock_dir = out / "runs" / "stock" / f"seed-{seed}"
        _say(f"seed {seed}: stock reference", progress)
        ref = _stock_reference(loaded_data, cfg, targets, {a: p.targets for a, p in plans.items()}, diag, stock_dir)
        shared.pop("stock", None)  # the stock copy is not needed any more (each training run gets a fresh one)
        runs.append(summarize_stock(seed, ref, heads["targets"]))
        stock = StockEvaluation(perplexities={k: v for k, v in ref["row"].items() if k.endswith("_ppl")},
                                diagnosis=diag if cfg.diagnose_every_eval else None, source=str(stock_dir / "reference.json"))
        manifests: dict[str, dict] = {}
        now: set[str] = set()
        # 1. every arm trains until its patience runs out (or the cap); 2. the ones that stopped
        # earlier continue, without early stopping, to the largest number of steps any arm needed.
        for budget in (None, "equalise"):
            if budget == "equalise":
                budgets[str(seed)] = seed_budget(manifests)
                budget = budgets[str(seed)]["steps"]
            for arm, plan in plans.items():
                arm_cfg = cfg.with_(reinitialise=False) if arm == "no_reinit" else cfg
                run_dir = out / "runs" / arm / f"seed-{seed}"
                if budget is None:
                    _say(f"seed {seed}: {arm} -> {run_dir}", progress)
                elif will_extend(RunManifest.from_dict(manifests[arm]), budget):
                    _say(f"seed {seed}: {arm} continues to the seed's budget of {budget} steps", progress)
                manifests[arm], did = _train_arm(arm, loaded_data, plan, arm_cfg, run_dir, stock=stock, settings=settings,
                                                 budget=budget, progress=progress)
                if did:
                    now.add(arm)
        shared.clear()
        heldout = load_file(str(stock_dir / "heldout.safetensors"))["heldout"]
        for arm in plans:
            run_dir = out / "runs" / arm / f"seed-{seed}"
            meas = _measure_arm(arm, factory, manifests[arm], run_dir, reference=ref, stock_diag=diag, heldout=heldout,
                                settings=settings, cfg=cfg)
            (trained if arm in now else reused).append(f"{arm}/seed-{seed}")
            runs.append(summarize_run(arm, seed, manifests[arm], meas, run_dir=str(run_dir), reused=arm not in now,
                                      budget=budgets[str(seed)]))
            if arm == "lora":
                lora_info = manifests[arm].get("lora")
            checkpoint_study()
    timing = {"wall_seconds": time.perf_counter() - start, "trained_now": trained, "reused": reused}
    study = _assemble(description, settings, heads, lora_info, runs, status="finished", timing=timing, out=out, budgets=budgets)
    study.save(out / "study.json")
    if figures:
        from .html import write_study_html

        write_study_html(study, out / "study.html", figures_dir=out / "figures")
    _say(f"finished: {out / 'study.json'}", progress)
    return study
