"""Train the matched-LoRA baseline with the surgery arm's budget, resumably.

What is shared with :func:`headsurgeon.surgery.operate`, so that the only difference is *what*
is trained: the corpus, held-out split, evaluation subsets and diagnosis prompts
(:mod:`.data`); the training loop (:func:`~headsurgeon.surgery.train.train_loop`: same data
order for the seed, micro-batching, clipping, precision); AdamW with the same learning rate and
weight decay; the warmup + cosine schedule; the evaluation rows
(:func:`~headsurgeon.surgery.monitor.evaluate_state`); the atomic training-state checkpoints.

What differs, and why: the LoRA starts *at* the stock model (B = 0), while surgery starts from
re-initialised heads, so the step-0 row here is the stock row (not evaluated twice); the model
is not saved as a full ``save_pretrained`` folder (the adapter matrices of the best and last
steps are, in ``adapter/``), and there is no bit-identity invariant to check: LoRA changes the
whole projections of its layers by design.

The run folder holds ``manifest.json`` (kind ``lora_run``, the same keys as a surgery manifest
plus ``lora``); a finished run is returned as is, an interrupted one resumes from its last
checkpoint, a folder holding another run is refused.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.io import ensure_output_dir, write_json
from headsurgeon.models import LoadedModel
from headsurgeon.surgery import SurgeryConfig, SurgeryPlan, SurgeryResult
from headsurgeon.surgery.config import is_better
from headsurgeon.surgery.checkpoint import save_training_state
from headsurgeon.surgery.manifest import check_same_run, fingerprint, new_manifest
from headsurgeon.surgery.monitor import evaluate_state
from headsurgeon.surgery.train import LoopState, NonFiniteLoss, make_accelerator, make_scheduler, resume_training, steps_per_epoch, train_loop

from .data import run_data
from .lora import LoraPieces, matched_sizing
from .measure import recollapsed_targets

KIND = "lora_run"


def train_lora(
    loaded: LoadedModel,
    plan: SurgeryPlan,
    *,
    out_dir: str | Path,
    config: SurgeryConfig,
    scale: float = 2.0,
    progress: bool = True,
    stop_after_step: int | None = None,
) -> SurgeryResult:
    """Train LoRA on the layers of ``plan``'s targets with a matched parameter count.

    ``plan``'s targets choose the layers and the parameter count to match, and are the heads
    whose health and ablation effect are tracked. ``stop_after_step`` simulates a kill (tests).
    """
    cfg = config
    run_dir = ensure_output_dir(out_dir)
    ad = loaded.adapter
    plan.check_against(ad.num_layers, ad.num_heads, loaded.name)
    sizing = matched_sizing(ad, plan, scale=scale)
    fp = fingerprint(loaded.describe(), plan.to_dict(), {**cfg.to_dict(), "lora": sizing.to_dict()})
    existing = check_same_run(run_dir, fp, model=loaded.describe(), plan=plan.to_dict(), config=cfg.to_dict(),
                              extra={"lora": sizing.to_dict()}, what="LoRA run", kind=KIND)
    if existing and existing["status"] == "finished":
        return SurgeryResult(run_dir, existing)

    data = run_data(loaded, cfg, progress=progress)
    accelerator = make_accelerator(cfg.precision)

    def evaluate(tag: str) -> dict:
        row, diag = evaluate_state(loaded, data.eval_sets, data.prompts, plan, batch_size=cfg.eval_batch_size)
        if diag is not None:
            row["diagnosis"] = f"diagnoses/{tag}.json"
            diag.save(run_dir / row["diagnosis"])
        return row

    if existing is None:
        manifest = new_manifest(model=loaded.describe(), plan=plan.to_dict(), config=cfg.to_dict(), corpus=data.corpus.info, other=data.other_info)
        manifest.update(kind=KIND, fingerprint=fp, lora=sizing.to_dict())
        manifest["stock"] = evaluate("stock")
    else:
        manifest = existing
    pieces = LoraPieces(loaded.adapter, sizing, seed=cfg.seed)
    manifest["trainable_parameters"] = pieces.num_parameters()
    if cfg.gradient_checkpointing:
        if hasattr(loaded.model, "activation_checkpointing_enable"):
            loaded.model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            loaded.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    optimizer = torch.optim.AdamW(pieces.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    train = data.corpus.train
    per_epoch = steps_per_epoch(len(train), cfg, accelerator.num_processes)
    if per_epoch < 1:
        raise HeadsurgeonError(f"the corpus gives {len(train)} training sequences, fewer than one optimizer step needs; use more text")
    total = cfg.max_steps or cfg.epochs * per_epoch
    scheduler = make_scheduler(optimizer, cfg, total)
    loaded.model.to(accelerator.device)
    optimizer = accelerator.prepare_optimizer(optimizer)
    state = LoopState()

    def save_adapter(tag: str) -> None:
        save_file({k: p.detach().contiguous().cpu() for k, p in pieces.named_pieces().items()}, str(run_dir / "adapter" / f"{tag}.safetensors"))

    def checkpoint(step: int) -> None:
        save_training_state(run_dir, step=step, pieces={k: p.data for k, p in pieces.named_pieces().items()},
                            optimizer=optimizer, scheduler=scheduler,
                            progress={"step": step, "tokens": state.tokens, "train_seconds": state.train_seconds})
        write_json(run_dir / "manifest.json", manifest)

    def maybe_best(row: dict) -> None:
        value, best = row.get(cfg.best_metric), manifest["best"]
        if value is not None and is_better(value, None if best is None else best["value"], cfg.best_metric):
            manifest["best"] = {"metric": cfg.best_metric, "value": value, "step": row["step"], "path": "adapter/best.safetensors"}
            save_adapter("best")

    (run_dir / "adapter").mkdir(exist_ok=True)
    resumed = resume_training(run_dir, pieces=pieces, optimizer=optimizer, scheduler=scheduler, manifest=manifest) if existing else None
    if resumed is not None:
        state = resumed
    else:
        # B = 0: the model at step 0 *is* the stock model, so its row is the stock row.
        manifest["history"] = [{"step": 0, "epoch": 0.0, "tokens": 0, "lr": 0.0, "label": "start (LoRA B = 0: the stock model)", **manifest["stock"]}]
        maybe_best(manifest["history"][0])
        checkpoint(0)

    def on_step(st: LoopState, epoch_end: bool) -> None:
        if stop_after_step is not None and st.step > stop_after_step:
            raise KeyboardInterrupt(f"simulated kill after step {stop_after_step}")
        if not (st.step % cfg.eval_every == 0 or epoch_end or st.step == total):
            return
        row = {"step": st.step, "epoch": round(st.step / per_epoch, 3), "tokens": st.tokens, "train_loss": round(st.recent_loss, 4),
               "lr": scheduler.get_last_lr()[0], "tokens_per_second": round(st.tokens / max(st.train_seconds, 1e-9), 1),
               "epoch_end": epoch_end, **evaluate(f"step-{st.step:06d}")}
        manifest["history"].append(row)
        maybe_best(row)
        checkpoint(st.step)

    start = time.perf_counter()
    try:
        state = train_loop(accelerator=accelerator, model=loaded.model, slices=pieces, optimizer=optimizer, scheduler=scheduler,
                           train=train, cfg=cfg, total_steps=total, state=state, on_step=on_step, progress=progress)
    except NonFiniteLoss as exc:
        manifest["status"] = f"stopped: {exc}"
        write_json(run_dir / "manifest.json", manifest)
        raise HeadsurgeonError(f"{exc}; LoRA run stopped, lower --lr or use --precision fp32") from None
    finally:
        loaded.model.eval()
    save_adapter("final")
    hist = manifest["history"]
    manifest["outcome"] = {"targets": len(plan.targets), "targets_healthy_final": hist[-1].get("targets_healthy"),
                           "recollapsed_targets": recollapsed_targets(hist, [str(t) for t in plan.targets]), "steps": state.step, "tokens": state.tokens}
    manifest["timing"] = {"wall_seconds_this_session": time.perf_counter() - start, "train_seconds": state.train_seconds,
                          "tokens_per_second": round(state.tokens / max(state.train_seconds, 1e-9), 1)}
    manifest["status"] = "finished"
    write_json(run_dir / "manifest.json", manifest)
    return SurgeryResult(run_dir, manifest)


def load_lora_weights(loaded: LoadedModel, run_dir: str | Path, manifest: dict) -> LoraPieces:
    """Re-inject a finished run's LoRA (seeded as it was) and load its final matrices."""
    from safetensors.torch import load_file

    from .lora import LoraSizing

    sizing = LoraSizing(**{k: v for k, v in manifest["lora"].items() if k != "ratio"})
    pieces = LoraPieces(loaded.adapter, sizing, seed=manifest["config"]["seed"])
    pieces.load_pieces(load_file(str(Path(run_dir) / "adapter" / "final.safetensors")))
    loaded.model.eval()
    return pieces
