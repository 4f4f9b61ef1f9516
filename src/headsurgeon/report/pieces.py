"""The report's optional, model-loading pieces: generations, MLP dormancy, head ablation.

Each needs checkpoints loaded (seconds to minutes on a real model), so each can be skipped,
and each result is cached in ``RUN/evaluation/<piece>.json`` with the settings and run state
that produced it: a second ``headsurgeon report`` with the same settings reuses it instead of
loading models again. Anything missing (no stock model folder, corpus gone) turns into a
``{"skipped": reason}`` entry rather than an error: a report of a partial run is still useful.
"""

from __future__ import annotations

import json
from pathlib import Path

from headsurgeon.corpus import spread_rows
from headsurgeon.errors import HeadsurgeonError
from headsurgeon.evaluation.generation import GenerationSettings, generate_side_by_side
from headsurgeon.evaluation.head_ablation import ablation_before_after, ablation_groups
from headsurgeon.evaluation.inputs import RunRecord
from headsurgeon.evaluation.mlp_dormancy import compare_dormancy, mlp_dormancy
from headsurgeon.io import read_document, write_document
from headsurgeon.models import LoadedModel, load_model
from headsurgeon.models.loading import resolve_local_dir
from headsurgeon.surgery.data import training_corpus


def checkpoints(run: RunRecord, stock: Path | None) -> dict[str, Path]:
    """``label -> model folder`` for stock, best and final (or the latest epoch of a running run)."""
    out: dict[str, Path] = {}
    if stock is not None:
        out["stock"] = stock
    m, folder = run.manifest, run.folder
    best = m.best
    last_step = run.evals[-1]["step"] if run.evals else None
    final_ok = run.finished and (folder.model("final") / "config.json").is_file()
    if best and (folder.model("best") / "config.json").is_file():
        same = final_ok and best["step"] == last_step
        out[f"best = final (step {best['step']})" if same else f"best (step {best['step']})"] = folder.model("best")
        if same:
            return out
    if final_ok:
        out[f"final (step {last_step})"] = folder.model("final")
    return out


def stock_folder(run: RunRecord, spec: str | None) -> tuple[Path | None, str | None]:
    """The stock model's local folder, or ``(None, why not)``."""
    if spec:  # asked for explicitly: a wrong path is an error, not a note
        folder = resolve_local_dir(spec)
        if not (folder / "config.json").is_file():
            raise HeadsurgeonError(f"--stock-model {spec} is not a local model folder (no config.json); pass the folder the run was made from")
        return folder, None
    source = run.manifest.model.get("source")
    if not source or source == "in-memory":
        return None, "the run was made from an in-memory model; pass --stock-model FOLDER to include the stock model"
    try:
        folder = resolve_local_dir(source)
    except HeadsurgeonError as exc:
        return None, str(exc)
    if not (folder / "config.json").is_file() and not Path(source).is_absolute():
        # manifests before 0.1 stored the -m path as typed: try it from the folders around the run
        for base in Path(run.run_dir).resolve().parents:
            if (base / source / "config.json").is_file():
                return base / source, None
    if not (folder / "config.json").is_file():
        return None, f"stock model {source} is not a local model folder; pass --stock-model FOLDER"
    return folder, None


def cached(run: RunRecord, name: str, key: dict, reuse: bool, compute) -> dict:
    """``compute()`` unless ``RUN/evaluation/<name>.json`` holds a result for the same ``key``."""
    path = run.folder.report_part(name)
    if reuse and path.is_file():
        try:
            doc = read_document(path, kind="report_piece")
            if doc.get("key") == json.loads(json.dumps(key)):
                return {**doc["result"], "cached": str(path)}
        except (OSError, ValueError, KeyError, HeadsurgeonError):  # unreadable or older: computed again
            pass
    result = compute()
    if run.folder.holds_run():  # never recreate a run folder deleted meanwhile (it would block a new run there)
        try:
            write_document(path, "report_piece", {"key": key, "result": result})
        except OSError:  # a read-only run folder still gets its report
            pass
    return result


#: Bumped when a piece's result layout changes, so older caches are recomputed.
CACHE_VERSION = 2


def _key(run: RunRecord, models: dict[str, Path], **settings) -> dict:
    return {"cache_version": CACHE_VERSION, "run_updated": run.manifest.updated, "models": {k: str(v) for k, v in models.items()},
            **settings}


def generations_piece(run: RunRecord, models: dict[str, Path], prompts: list[str] | None, settings: GenerationSettings,
                      *, reuse: bool, progress: bool, placement: dict | None = None) -> dict:
    placement = placement or DEFAULT_PLACEMENT
    key = _key(run, models, prompts=prompts, settings=settings.__dict__, **_placement_key(placement))
    return cached(run, "generations", key, reuse,
                  lambda: generate_side_by_side(models, prompts, settings=settings, progress=progress, **placement).to_dict())


#: Where and in which dtype report pieces run their models (``ReportOptions.device`` / ``.dtype``).
DEFAULT_PLACEMENT = {"dtype": "fp32", "device": "cpu"}


def _placement_key(placement: dict) -> dict:
    """Cache-key entries: the default placement adds none, so caches made before the option stay valid."""
    if placement == DEFAULT_PLACEMENT:
        return {}
    return {"placement": {k: v.to_dict() if hasattr(v, "to_dict") else v for k, v in placement.items()}}


def _load(folder: Path, placement: dict | None = None) -> LoadedModel:
    return load_model(str(folder), progress=False, **(placement or DEFAULT_PLACEMENT))


def dormancy_piece(run: RunRecord, models: dict[str, Path], threshold: float, *, reuse: bool, placement: dict | None = None) -> dict:
    def compute() -> dict:
        return compare_dormancy({label: mlp_dormancy(_load(folder, placement), threshold=threshold) for label, folder in models.items()})

    return cached(run, "dormancy", _key(run, models, threshold=threshold, **_placement_key(placement or DEFAULT_PLACEMENT)), reuse, compute)


def heldout_sequences(run: RunRecord, tokenizer, n: int):
    """``n`` held-out sequences of the run's own corpus, rebuilt from its configuration (deterministic)."""
    corpus = training_corpus(tokenizer, run.manifest.config)
    rows = corpus.heldout if len(corpus.heldout) else corpus.train
    same = corpus.info.get("sha256") == (run.manifest.corpus or {}).get("sha256")
    return spread_rows(rows, n), "heldout" if len(corpus.heldout) else "train", same


def ablation_piece(run: RunRecord, models: dict[str, Path], *, sequences: int, per_group: int, reuse: bool, progress: bool,
                   placement: dict | None = None) -> dict:
    def compute() -> dict:
        loaded = {label: _load(folder, placement) for label, folder in models.items()}
        seqs, split, same = heldout_sequences(run, next(iter(loaded.values())).tokenizer, sequences)
        groups = ablation_groups(run.stock_point().diagnosis, run.plan.targets)
        res = ablation_before_after(loaded, groups, seqs, per_group=per_group, progress=progress)
        res["settings"].update(split=split, corpus_matches_run=same)
        return res

    return cached(run, "ablation", _key(run, models, sequences=sequences, per_group=per_group, **_placement_key(placement or DEFAULT_PLACEMENT)),
                  reuse, compute)
