"""``operate``: apply a surgery plan, retrain the surgical slices, checkpoint, verify.

Order of work: evaluate the stock model (perplexities + diagnosis); hash every parameter's
frozen part; re-initialise the targets' Q/K/V slices (seeded Xavier, zero biases) and zero
their output columns; evaluate again ("right after re-initialisation", step 0); train; evaluate
every ``eval_every`` steps and at each epoch end, keeping the best model by ``best_metric``;
save the final model and check that everything outside the surgical slices is bit-identical to
the input model. The run itself (identity, resume, checkpoints, history) is the shared
skeleton of :mod:`.training_run`; this module only says what surgery trains and keeps.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from headsurgeon.corpus.sources import resolve_source
from headsurgeon.errors import HeadsurgeonError
from headsurgeon.io import ensure_output_dir, read_document
from headsurgeon.models import LoadedModel, load_model
from headsurgeon.models.placement import Placement
from headsurgeon.models.preflight import model_facts

from .checkpoint import RECORD, save_model
from .config import SurgeryConfig
from .data import RunData
from .folder import RunFolder
from .invariant import compare_hashes, frozen_hashes, region_hashes
from .manifest import RunManifest
from .plan import SurgeryPlan
from .preflight import check_run_inputs, check_training_dtype
from .slices import SurgicalSlices
from .training_run import StockEvaluation, SurgeryResult, Trainable, run_training

__all__ = ["SliceTraining", "SurgeryResult", "operate", "verify_model_dir"]


class SliceTraining(Trainable):
    """Surgery's trainable tensors: the targets' Q/K/V rows and output columns (:mod:`.slices`)."""

    kind = "surgery_run"
    what = "surgery run"
    keeps_epoch_models = True

    def install(self, manifest: RunManifest) -> None:
        self.slices = SurgicalSlices(self.adapter, self.plan, seed=self.cfg.seed, reinitialise=self.cfg.reinitialise)
        regions = [r.slice for r in self.slices.regions]
        if manifest.input_hashes is None:
            state0 = self.loaded.model.state_dict()
            manifest.input_hashes = frozen_hashes(state0, regions)
            manifest.surgical_regions = [
                {"head": str(r.head), "role": r.role, "param": r.slice.param, "dim": r.slice.dim, "start": r.slice.start,
                 "stop": r.slice.stop, "init": r.init}
                for r in self.slices.regions
            ]
            manifest.input_region_hashes = region_hashes(state0, regions)
        self.slices.install()

    def parameters(self) -> list[torch.nn.Parameter]:
        return self.slices.parameters()

    def named_pieces(self) -> dict[str, torch.nn.Parameter]:
        return self.slices.named_pieces()

    def start_row(self, evaluate: Callable[[str], dict], manifest: RunManifest) -> dict:
        label = "after re-initialisation" if self.cfg.reinitialise else "start (no re-initialisation)"
        return {"label": label, **evaluate("step-000000")}

    def kept(self, folder: RunFolder, tag: str) -> str:
        return str(folder.model(tag).relative_to(folder.root))

    def save(self, folder: RunFolder, tag: str, manifest: RunManifest, *, same_as: str | None = None) -> None:
        record = {"run": str(folder.root), "plan": manifest.plan, "config": manifest.config, "fingerprint": manifest.fingerprint,
                  "input_hashes": manifest.input_hashes, "surgical_regions": manifest.surgical_regions, "tag": tag}
        # a folder copied to another machine without its models/ (they are large) has no `same_as`
        # to link: write the merged weights then (the model's own tensors are the stock ones)
        link = folder.model(same_as) if same_as and folder.model(same_as).is_dir() else None
        save_model(self.loaded.model, self.loaded.tokenizer, None if link else self.slices.merged_state_dict(), folder.model(tag),
                   record, same_as=link)

    def finish(self, folder: RunFolder, manifest: RunManifest, *, main: bool) -> None:
        if main:
            manifest.invariant["final"] = verify_model_dir(folder.model("final"))
            if manifest.best and manifest.best.get("path"):  # None: lost with a folder copied without its models
                manifest.invariant["best"] = verify_model_dir(folder.model("best"))
        self.slices.merge()


def operate(
    model: str | LoadedModel | None,
    plan: SurgeryPlan | str | Path,
    *,
    out_dir: str | Path,
    config: SurgeryConfig | None = None,
    progress: bool = True,
    stop_after_step: int | None = None,
    allow_other_model: bool = False,
    data: RunData | None = None,
    stock: StockEvaluation | None = None,
    budget_steps: int | None = None,
    device: str = "cpu",
    dtype: str = "fp32",
    placement: Placement | None = None,
) -> SurgeryResult:
    """Run surgery; returns the :class:`SurgeryResult`. ``stop_after_step`` simulates a kill (tests).

    ``device``, ``dtype`` and ``placement`` say how a model given by name is loaded
    (:func:`~headsurgeon.models.load_model`, the one loading path; ignored for a
    :class:`~headsurgeon.models.LoadedModel`): the frozen weights are held in ``dtype`` (the
    trainable slices stay fp32 master copies), and ``placement`` spreads them with
    accelerate's device map. A run's dtype is part of its identity.

    ``data``, ``stock`` and ``budget_steps`` as in :func:`~.training_run.run_training` (a study
    shares one corpus and one stock evaluation among its arms, and equalises their budgets).

    Raises :class:`~headsurgeon.surgery.training_run.RunInterrupted` (a ``KeyboardInterrupt``)
    on Ctrl-C, saying what was kept; the same call resumes. The plan must have been made for
    this model (family, shape, weights fingerprint) unless ``allow_other_model``; that, the
    sequence length, the output folder and the corpus paths are checked before any weight is read.
    """
    cfg = config or SurgeryConfig()
    plan = plan if isinstance(plan, SurgeryPlan) else SurgeryPlan.load(plan)
    ensure_output_dir(out_dir)
    facts = None if isinstance(model, LoadedModel) else model_facts(model)
    if facts is not None:  # config.json only: nothing loaded yet
        check_run_inputs(plan, facts.describe, facts.max_positions, cfg, allow_other_model=allow_other_model)
    for source in (cfg.corpus, cfg.other_corpus):  # a missing path or a broken data set folder: before the model loads
        if source:
            resolve_source(source)
    check_training_dtype(dtype, cfg)
    loaded = model if isinstance(model, LoadedModel) else load_model(model, progress=progress, device=device, dtype=dtype,
                                                                     placement=placement)
    check_run_inputs(plan, loaded.describe(), loaded.adapter.max_positions, cfg, allow_other_model=allow_other_model)
    return run_training(SliceTraining(loaded, plan, cfg), out_dir=out_dir, progress=progress, stop_after_step=stop_after_step,
                        data=data, stock=stock, budget_steps=budget_steps)


def verify_model_dir(model_dir: str | Path) -> dict:
    """Re-hash a saved model's frozen parts against the input hashes recorded beside it."""
    from safetensors.torch import load_file

    from headsurgeon.models.adapters import TensorSlice

    model_dir = Path(model_dir)
    rec_path = model_dir / RECORD
    if not rec_path.is_file():
        raise HeadsurgeonError(f"{model_dir} has no {RECORD}; it was not written by `headsurgeon operate`")
    rec = read_document(rec_path, kind="model_record")
    regions = [TensorSlice(r["param"], r["dim"], r["start"], r["stop"]) for r in rec["surgical_regions"]]
    state: dict[str, torch.Tensor] = {}
    for f in sorted(model_dir.glob("*.safetensors")):
        state.update(load_file(str(f)))
    ref = rec["input_hashes"]
    # Tied weights are stored once; compare what the file holds and report what it omits.
    current = frozen_hashes(state, regions)
    report = compare_hashes({k: v for k, v in ref.items() if k in current}, current)
    report["not_stored"] = sorted(set(ref) - set(current))
    return report
