"""One training-run skeleton for every recipe that trains a few tensors of a frozen model.

``operate`` (surgical slices) and the study's LoRA arm (LoRA matrices) are the same run: the
identity check, the corpus and evaluation sets, the stock evaluation, AdamW with warmup +
cosine, the data-parallel wrapping, the evaluation rows, best tracking, checkpoints, resume,
NaN handling and timing all live here once. What differs sits behind :class:`Trainable`:
which tensors are created and trained, what the first history row is, what is written for the
best and last steps, and what is checked at the end.

The order of work is chosen so a run folder can be resumed from its first byte on disk:

1. the run's identity (input weights digest, plan, settings) is computed and compared with
   the folder's manifest, under the folder's lock, before anything is trained;
2. everything that can refuse the run (the corpus, too few sequences for one step, the
   prefix cache) is checked before the first file is written;
3. the manifest is written first; the stock evaluation, the first row and checkpoint 0 follow;
   a run killed anywhere in between starts again from what is on disk;
4. every checkpoint carries its history rows, so the rows a resumed run continues with belong
   to the weights it continues from, and none is lost.

Early stopping (``config.patience``): a run stops after ``patience`` evaluations without a new
best ``best_metric``, or at the cap (``max_steps``, else ``epochs``). The learning-rate schedule
is always defined over the cap, never over where a run happens to stop, so a run stopped early
and continued later (``budget_steps``: a study gives every arm of a seed the same token budget)
follows exactly the schedule, data order and updates of a run that never stopped. Why a run
stopped is recorded in ``manifest.stopping``.

A caller running several runs on the same data (a study's arms) can hand in the
:class:`~.data.RunData` (the corpus tokenised once) and a :class:`StockEvaluation` (the stock
model evaluated once): the run then records that shared stock row instead of computing it again.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.models import LoadedModel

from .checkpoint import generations, load_training_state, save_training_state, tell
from .config import SurgeryConfig, is_better
from .data import RunData, run_data
from .estimate import run_shape
from .folder import RunFolder
from .invariant import weights_digest
from .killpoints import kill_point
from .manifest import RunManifest, check_same_run, environment_notes, fingerprint, load_manifest, save_manifest
from .monitor import diagnosis_fields, evaluate_state
from .narrate import Narrator
from .plan import SurgeryPlan
from .train import LoopState, NonFiniteLoss, make_accelerator, make_scheduler, steps_per_epoch, train_loop


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (or a simulated kill) during a run; the message says what was kept and how to resume."""


@dataclass
class SurgeryResult:
    """A finished (or stopped) run: its folder and manifest, with shortcuts to the headline numbers."""

    run_dir: Path
    manifest: dict

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.run_dir)

    @property
    def history(self) -> list[dict]:
        return self.manifest["history"]

    @property
    def best(self) -> dict | None:
        return self.manifest["best"]

    @property
    def invariant_held(self) -> bool:
        return bool(self.manifest["invariant"].get("final", {}).get("held"))

    @classmethod
    def load(cls, run_dir: str | Path) -> SurgeryResult:
        return cls(Path(run_dir), load_manifest(run_dir).to_dict())


class Trainable(ABC):
    """What a run trains, and the few decisions that depend on it.

    A subclass is constructed cheaply (nothing is changed in the model) so its :meth:`identity`
    can be checked first; :meth:`install` then creates the trainable tensors, seeded.
    """

    kind: str  # the manifest's kind
    what: str  # how error messages name the run
    keeps_epoch_models = False

    def __init__(self, loaded: LoadedModel, plan: SurgeryPlan, cfg: SurgeryConfig):
        self.loaded, self.plan, self.cfg = loaded, plan, cfg
        self.adapter = loaded.adapter  # also lets the training loop use the fused attention path

    def identity(self) -> dict:
        """Manifest entries beyond model, plan and settings that identify the run."""
        return {}

    @abstractmethod
    def install(self, manifest: RunManifest) -> None:
        """Create the trainable tensors in the model (and record what the manifest needs)."""

    @abstractmethod
    def parameters(self) -> list[torch.nn.Parameter]: ...

    @abstractmethod
    def named_pieces(self) -> dict[str, torch.nn.Parameter]: ...

    def load_pieces(self, tensors: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for key, p in self.named_pieces().items():
                p.copy_(tensors[key])

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @abstractmethod
    def start_row(self, evaluate: Callable[[str], dict], manifest: RunManifest) -> dict:
        """The step-0 history row (without the step counters)."""

    @abstractmethod
    def kept(self, folder: RunFolder, tag: str) -> str:
        """Where what is kept for ``tag`` (best, final, epoch-N) lives, relative to the folder."""

    @abstractmethod
    def save(self, folder: RunFolder, tag: str, manifest: RunManifest, *, same_as: str | None = None) -> None:
        """Write what is kept for ``tag`` (main process only).

        ``same_as``: a tag already written with the very same weights (stored once)."""

    def finish(self, folder: RunFolder, manifest: RunManifest, *, main: bool) -> None:  # noqa: B027 - a hook with nothing to do by default
        """After the last step (every process): checks and clean-up of the model."""


@dataclass
class StockEvaluation:
    """The stock model's perplexities and diagnosis, computed once and reused by several runs.

    :meth:`row` gives the stock row :func:`~.monitor.evaluate_state` would compute for a plan
    (the diagnosis-derived entries depend on the plan's targets), marked ``reused_from``.
    """

    perplexities: dict  # train_ppl, heldout_ppl, other_ppl as evaluate_state rounds them
    diagnosis: object | None  # the stock Diagnosis on the run's diagnosis prompts (None: diagnosis off)
    source: str  # where it was computed (recorded in the row)

    def row(self, plan: SurgeryPlan) -> dict:
        row = dict(self.perplexities)
        if self.diagnosis is not None:
            row.update(diagnosis_fields(self.diagnosis, plan))
        return {**row, "eval_seconds": 0.0, "reused_from": self.source}


def patience_exhausted(manifest: RunManifest, patience: int) -> bool:
    """Whether the last ``patience`` evaluations brought no new best (the early-stopping rule)."""
    best = manifest.best
    return best is not None and sum(r["step"] > best["step"] for r in manifest.history) >= patience


def will_extend(manifest: RunManifest, budget_steps: int | None) -> bool:
    """Whether a run that stopped early is to be continued up to ``budget_steps``."""
    stop = manifest.stopping
    if budget_steps is None or not stop or stop.get("reason") not in ("patience", "budget"):
        return False
    return (manifest.outcome or {}).get("steps", 0) < min(budget_steps, stop["cap"])


def recollapsed_targets(history: list[dict], targets: list[str]) -> list[str]:
    """Targets healthy at some evaluation after the start and collapsed at a later one."""
    ever, back = set(), set()
    for row in history[1:]:
        now = set(row.get("targets_collapsed", []))
        back |= ever & now
        ever |= set(targets) - now
    return sorted(back)


def check_trainable_placement(loaded: LoadedModel) -> None:
    """Refuse weights that accelerate offloaded (to disk, or to the CPU behind a GPU map): they sit on
    the meta device between forwards, so nothing can be hashed, spliced or trained there."""
    offloaded = [n for n, p in loaded.model.named_parameters() if p.device.type == "meta"]
    if offloaded:
        raise HeadsurgeonError(f"{len(offloaded)} weight tensors (e.g. {offloaded[0]}) were offloaded by the device map, and training "
                               "needs every weight in memory; raise --max-memory, or drop --device-map / --offload-folder")


def dtype_identity(loaded: LoadedModel) -> dict:
    """``{"dtype": "bf16"}`` for weights held in another dtype than fp32 (part of the run's identity; fp32 adds
    nothing, so runs started before the option keep their fingerprint)."""
    from headsurgeon.models.loading import DTYPES

    name = next((k for k, v in DTYPES.items() if v == loaded.dtype and len(k) == 4), str(loaded.dtype))
    return {} if name == "fp32" else {"dtype": name}


def _enable_gradient_checkpointing(model) -> None:
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x name
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def _kept(folder: RunFolder) -> str:
    gens = generations(folder.checkpoints)
    if gens:
        step = int(gens[0].name[5:])
        return f"kept {folder.root} with its checkpoint at step {step} and the evaluations up to it"
    if folder.holds_run():
        return f"kept {folder.root} (no training step checkpointed yet; what was evaluated is kept)"
    return "nothing was written"


def run_training(
    trainable: Trainable,
    *,
    out_dir: str | Path,
    progress: bool = True,
    stop_after_step: int | None = None,
    data: RunData | None = None,
    stock: StockEvaluation | None = None,
    budget_steps: int | None = None,
) -> SurgeryResult:
    """Train ``trainable`` in the run folder ``out_dir`` (resuming it, or returning it if finished).

    ``data``: the run's corpus and evaluation sets, already built for this configuration (else
    built here). ``stock``: the stock evaluation, already computed (else computed here).
    ``budget_steps``: continue a run that stopped early (patience) up to this step, without early
    stopping; its best point is then the best over the whole budget. A finished run that needs no
    continuation is returned as it is.
    """
    loaded, plan, cfg = trainable.loaded, trainable.plan, trainable.cfg
    folder = RunFolder(out_dir)
    folder.ensure_writable()
    plan.check_against(loaded.adapter.num_layers, loaded.adapter.num_heads, loaded.name)
    check_trainable_placement(loaded)
    weights = weights_digest(loaded.model)
    ident = {**trainable.identity(), **dtype_identity(loaded)}
    model_doc, plan_doc, cfg_doc = loaded.describe(), plan.to_dict(), cfg.to_dict()
    fp = fingerprint(model_doc, plan_doc, cfg_doc, weights=weights, extra=ident)
    accelerator = make_accelerator(cfg.precision, cpu=loaded.placement is None and loaded.device.type == "cpu")
    if loaded.placement is not None and accelerator.num_processes > 1:
        raise HeadsurgeonError("a model spread by --device-map cannot also be trained data-parallel (accelerate launch / torchrun); "
                               "use one process with --device-map, or several processes without it")
    main = accelerator.is_main_process
    try:
        with folder.locked() if main else nullcontext():
            existing = check_same_run(folder, fp, kind=trainable.kind, model=model_doc, plan=plan_doc, config=cfg_doc,
                                      weights=weights, extra=ident, what=trainable.what)
            # Only now is the folder known to be ours (this run's, or empty): clean what killed writes left.
            if main and (removed := folder.remove_leftovers()):
                tell(f"removed {len(removed)} leftovers of an interrupted write in {folder.root} ({', '.join(removed[:3])}"
                     f"{', ...' if len(removed) > 3 else ''})")
            accelerator.wait_for_everyone()  # every process has read the folder before the main one writes to it
            if existing is not None and existing.finished and not will_extend(existing, budget_steps):
                return SurgeryResult(folder.root, existing.to_dict())
            data = data if data is not None else run_data(loaded, cfg, progress=progress)
            return _train(trainable, folder, data, accelerator, existing=existing, stock=stock, budget_steps=budget_steps,
                          manifest=existing or RunManifest(kind=trainable.kind, fingerprint=fp, model=model_doc, plan=plan_doc, config=cfg_doc,
                                                           weights=weights, corpus=data.corpus.info, other_corpus=data.other_info, **ident),
                          progress=progress, stop_after_step=stop_after_step)
    except RunInterrupted:
        raise
    except KeyboardInterrupt as exc:
        why = f" ({exc})" if str(exc) else ""
        raise RunInterrupted(f"interrupted{why}; {_kept(folder)}; run the same command again to resume") from None


def _train(trainable: Trainable, folder: RunFolder, data: RunData, accelerator, *, existing: RunManifest | None,
           manifest: RunManifest, progress: bool, stop_after_step: int | None, stock: StockEvaluation | None,
           budget_steps: int | None) -> SurgeryResult:
    loaded, plan, cfg = trainable.loaded, trainable.plan, trainable.cfg
    main = accelerator.is_main_process
    train = data.corpus.train
    per_epoch = steps_per_epoch(len(train), cfg, accelerator.num_processes)
    if per_epoch < 1:
        raise HeadsurgeonError(
            f"the corpus gives {len(train)} training sequences of {cfg.seq_len} tokens, fewer than one optimizer step "
            f"needs ({cfg.batch_size * cfg.grad_accum * accelerator.num_processes}); use more text, a shorter --seq-len or smaller batches"
        )
    total = cfg.max_steps or cfg.epochs * per_epoch  # the cap: the schedule is defined over it, wherever the run stops
    extend_to = (manifest.stopping or {}).get("budget")  # a continuation under way (recorded before its first step)
    if will_extend(manifest, budget_steps):
        extend_to = max(extend_to or 0, min(budget_steps, total))
    end = extend_to or total
    early = cfg.patience is not None and extend_to is None
    prefix_cache = None
    if cfg.cache_frozen_prefix:
        from .prefix_cache import FrozenPrefixCache

        prefix_cache = FrozenPrefixCache(loaded.adapter, min(h.layer for h in plan.targets), len(train),
                                         max_bytes=int(cfg.prefix_cache_gb * 2**30))

    def save() -> None:
        if main:
            save_manifest(folder, manifest)

    tell_user = Narrator(progress and main)
    tell_user.shape(run_shape(cfg, len(train), accelerator.num_processes, total_steps=end))

    def evaluate(tag: str) -> dict:
        label = f"step {int(tag[5:])}" if tag.startswith("step-") else tag
        row, diag = evaluate_state(loaded, data.eval_sets, data.prompts, plan, batch_size=cfg.eval_batch_size,
                                   progress=progress and main, label=label)
        if diag is not None:
            row["diagnosis"] = folder.diagnosis_rel(tag)
            if main:
                diag.save(folder.diagnosis(tag))
        tell_user.evaluated(label, row, len(plan.targets))
        return row

    if existing is None:
        manifest.warnings = loaded.adapter.surgery_warnings()  # e.g. OLMo 2: surgery is not local
        for warning in manifest.warnings:
            if main:
                logging.getLogger("headsurgeon").warning("warning: %s", warning)
        save()
        kill_point("manifest-created")
    if manifest.stock is None:
        if stock is not None:
            manifest.stock = stock.row(plan)
            if stock.diagnosis is not None:
                manifest.stock["diagnosis"] = folder.diagnosis_rel("stock")
                if main:
                    stock.diagnosis.save(folder.diagnosis("stock"))
        else:
            manifest.stock = evaluate("stock")
        save()
        kill_point("stock-evaluated")

    trainable.install(manifest)
    manifest.trainable_parameters = trainable.num_parameters()
    if cfg.gradient_checkpointing:
        _enable_gradient_checkpointing(loaded.model)
    optimizer = torch.optim.AdamW(trainable.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = make_scheduler(optimizer, cfg, total)
    # Under several processes the training forward goes through DDP (gradients all-reduced);
    # evaluation and saving keep using the plain model, which the wrapper shares parameters with.
    if loaded.placement is None:  # a device map keeps every module where accelerate put it
        loaded.model.to(accelerator.device)
    train_model = accelerator.prepare_model(loaded.model) if accelerator.num_processes > 1 else loaded.model
    optimizer = accelerator.prepare_optimizer(optimizer)
    state = LoopState()

    def checkpoint(step: int) -> None:
        if not main:
            return
        save_training_state(folder.checkpoints, step=step, pieces={k: p.data for k, p in trainable.named_pieces().items()},
                            optimizer=optimizer, scheduler=scheduler,
                            progress={"step": step, "tokens": state.tokens, "train_seconds": state.train_seconds},
                            history=manifest.history, best=manifest.best)
        save()
        kill_point("manifest-saved")

    def maybe_best(row: dict) -> None:
        metric = cfg.best_metric
        value, best = row.get(metric), manifest.best
        if value is not None and is_better(value, None if best is None else best["value"], metric):
            if main:
                trainable.save(folder, "best", manifest)
            manifest.best = {"metric": metric, "value": value, "step": row["step"], "path": trainable.kept(folder, "best")}

    computes_bf16 = manifest.dtype == "bf16" or cfg.precision == "bf16"
    resumed = load_training_state(folder.checkpoints) if existing is not None else None
    if resumed is not None:
        for s in resumed.skipped:
            tell(f"checkpoint step {s['step']} in {folder.checkpoints} is damaged ({s['why']}); resuming from step {resumed.step}")
        trainable.load_pieces(resumed.pieces)
        optimizer.load_state_dict(resumed.optimizer)
        scheduler.load_state_dict(resumed.scheduler)
        resumed.restore_rng()
        manifest.history, manifest.best = resumed.history, resumed.best
        manifest.resumed.append({"from_step": resumed.step, **({"damaged_skipped": resumed.skipped} if resumed.skipped else {}),
                                 **({"to_budget": extend_to} if extend_to else {}),
                                 **environment_notes(bf16=computes_bf16)})
        save()  # now, not at the next checkpoint: a session killed before it would leave no trace
        state = LoopState(step=resumed.progress["step"], tokens=resumed.progress["tokens"], train_seconds=resumed.progress["train_seconds"])
        if early and patience_exhausted(manifest, cfg.patience):
            end = state.step  # it had already stopped there (killed before the manifest said so)
    else:
        manifest.versions.update(environment_notes(bf16=computes_bf16))
        manifest.history = [{"step": 0, "epoch": 0.0, "tokens": 0, "lr": 0.0, **trainable.start_row(evaluate, manifest)}]
        maybe_best(manifest.history[0])
        checkpoint(0)
    tell_user.training(len(plan.targets), trainable.num_parameters(), state.step)
    session_start_step, session_train_seconds = state.step, state.train_seconds
    # The time of one evaluation, for the estimate (a reused stock row took 0 s here: use the step-0 row's).
    eval_seconds = next((r["eval_seconds"] for r in (manifest.stock or {}, *manifest.history) if r.get("eval_seconds")), None)

    def on_step(st: LoopState, epoch_end: bool) -> None:
        kill_point("step")
        if stop_after_step is not None and st.step > stop_after_step:
            raise KeyboardInterrupt(f"simulated kill after step {stop_after_step}")
        if st.step == session_start_step + 1 and end > st.step:
            tell_user.remaining(step=st.step, step_seconds=st.train_seconds - session_train_seconds, end=end, per_epoch=per_epoch,
                                eval_every=cfg.eval_every, eval_seconds=eval_seconds, early_stopping=early)
        if not (st.step % cfg.eval_every == 0 or epoch_end or st.step == end):
            return False
        row = {"step": st.step, "epoch": round(st.step / per_epoch, 3), "tokens": st.tokens, "train_loss": round(st.recent_loss, 4),
               "train_loss_mean": round(st.take_window_mean(), 4),  # on_step follows a step: never empty
               "lr": scheduler.get_last_lr()[0], "tokens_per_second": round(st.tokens / max(st.train_seconds, 1e-9), 1),
               "epoch_end": epoch_end, **evaluate(folder.step_tag(st.step))}
        manifest.history.append(row)
        maybe_best(row)
        if epoch_end and cfg.keep_epoch_models and trainable.keeps_epoch_models and main:
            trainable.save(folder, f"epoch-{st.step // per_epoch}", manifest)
        checkpoint(st.step)
        return early and patience_exhausted(manifest, cfg.patience)

    if extend_to:
        manifest.stopping = {**manifest.stopping, "budget": extend_to}
        manifest.status = "running"
        save()
    start = time.perf_counter()
    try:
        state = train_loop(accelerator=accelerator, model=train_model, slices=trainable, optimizer=optimizer, scheduler=scheduler,
                           train=train, cfg=cfg, total_steps=end, state=state, on_step=on_step, progress=progress,
                           prefix_cache=prefix_cache, label=trainable.what.removesuffix(" run"))
    except NonFiniteLoss as exc:
        manifest.status = f"stopped: {exc}"
        save()
        last = generations(folder.checkpoints)
        raise HeadsurgeonError(f"{exc}; stopped, the last good checkpoint is {last[0] if last else 'none'}; "
                               "lower --lr or use --precision fp32") from None
    finally:
        loaded.model.eval()
    tell_user.say("saving the final model and checking that every frozen weight is bit-identical")
    if main:
        best_is_last = manifest.best is not None and manifest.best["step"] == state.step
        # A folder carried to another machine without its models (they are large: the converged
        # study commits manifests and checkpoints only) has lost the best model of an earlier session.
        best_gone = manifest.best is not None and not (folder.root / trainable.kept(folder, "best")).exists()
        trainable.save(folder, "final", manifest, same_as="best" if best_is_last and not best_gone else None)
        if best_gone and best_is_last:
            trainable.save(folder, "best", manifest, same_as="final")
        elif best_gone:
            tell(f"the best model (step {manifest.best['step']}) is not in {folder.root} any more (copied without it?); "
                 "its numbers are in the manifest, the final model is written")
            manifest.best = {**manifest.best, "path": None}
    trainable.finish(folder, manifest, main=main)
    hist = manifest.history
    if extend_to:
        manifest.stopping = {**manifest.stopping, "reason": "budget", "final_step": state.step}
    else:
        manifest.stopping = {"reason": "cap" if state.step >= total else "patience", "step": state.step, "final_step": state.step,
                             "patience": cfg.patience, "cap": total, "budget": None}
    manifest.outcome = {
        "targets": len(plan.targets),
        "targets_healthy_final": hist[-1].get("targets_healthy"),
        "recollapsed_targets": recollapsed_targets(hist, [str(h) for h in plan.targets]),
        "steps": state.step,
        "tokens": state.tokens,
    }
    if prefix_cache is not None:
        manifest.prefix_cache = {"first_layer": prefix_cache.first_layer, "sequences_kept": int(prefix_cache.filled.sum()),
                                 "micro_batches_skipped": prefix_cache.hits, "micro_batches_computed": prefix_cache.fills}
    manifest.timing = {"wall_seconds_this_session": time.perf_counter() - start, "train_seconds": state.train_seconds,
                       "tokens_per_second": round(state.tokens / max(state.train_seconds, 1e-9), 1)}
    manifest.status = "finished"
    save()
    return SurgeryResult(folder.root, manifest.to_dict())
