"""``operate``: apply a surgery plan, retrain the surgical slices, checkpoint, verify.

Order of work: evaluate the stock model (perplexities + diagnosis); hash every parameter's
frozen part; re-initialise the targets' Q/K/V slices (seeded Xavier, zero biases) and zero
their output columns; evaluate again ("right after re-initialisation", step 0); train; evaluate
every ``eval_every`` steps and at each epoch end, keeping the best model by ``best_metric``;
save the final model and check that everything outside the surgical slices is bit-identical to
the input model. A run directory that already holds the same run resumes from its last
checkpoint; a finished run is returned as is.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from headsurgeon.corpus import CorpusSpec, build_corpus, build_eval_set, spread_rows
from headsurgeon.errors import HeadsurgeonError
from headsurgeon.io import ensure_output_dir
from headsurgeon.models import LoadedModel, load_model
from headsurgeon.prompts import builtin_prompts
from headsurgeon.prompts.encoding import encode_prompts

from .checkpoint import latest_training_state, save_model, save_training_state
from .config import SurgeryConfig, is_better
from .invariant import compare, frozen_hashes, region_hashes
from .manifest import check_same_run, fingerprint, load_manifest, new_manifest, save_manifest
from .monitor import evaluate_state
from .plan import SurgeryPlan
from .prefix_cache import FrozenPrefixCache
from .slices import SurgicalSlices
from .train import LoopState, NonFiniteLoss, make_accelerator, make_scheduler, resume_training, steps_per_epoch, train_loop


@dataclass
class SurgeryResult:
    """A finished (or stopped) run: its folder and manifest, with shortcuts to the headline numbers."""

    run_dir: Path
    manifest: dict

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
    def load(cls, run_dir: str | Path) -> "SurgeryResult":
        return cls(Path(run_dir), load_manifest(run_dir))


def operate(
    model: str | LoadedModel | None,
    plan: SurgeryPlan | str | Path,
    *,
    out_dir: str | Path,
    config: SurgeryConfig | None = None,
    progress: bool = True,
    stop_after_step: int | None = None,
) -> SurgeryResult:
    """Run surgery; returns the :class:`SurgeryResult`. ``stop_after_step`` simulates a kill (tests)."""
    cfg = config or SurgeryConfig()
    plan = plan if isinstance(plan, SurgeryPlan) else SurgeryPlan.load(plan)
    run_dir = ensure_output_dir(out_dir)
    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    ad = loaded.adapter
    plan.check_against(ad.num_layers, ad.num_heads, loaded.name)
    fp = fingerprint(loaded.describe(), plan.to_dict(), cfg.to_dict())
    existing = check_same_run(run_dir, fp, model=loaded.describe(), plan=plan.to_dict(), config=cfg.to_dict())
    if existing and existing["status"] == "finished":
        return SurgeryResult(run_dir, existing)

    tok = loaded.tokenizer
    corpus = build_corpus(
        tok, CorpusSpec(source=cfg.corpus, heldout_fraction=cfg.heldout_fraction, max_tokens=cfg.max_train_tokens),
        seq_len=cfg.seq_len, seed=cfg.seed, progress=progress,
    )
    other = (build_eval_set(tok, CorpusSpec(source=cfg.other_corpus), seq_len=cfg.seq_len, max_sequences=cfg.eval_sequences,
                            progress=progress).sequences if cfg.other_corpus else None)
    n = cfg.eval_sequences
    # Evenly spaced rows: packed rows follow file order, so the first n would be one document's text.
    eval_sets = {"train": spread_rows(corpus.train, n), "heldout": spread_rows(corpus.heldout, n), "other": other}
    prompt_len = min(512, ad.max_positions or 512)
    prompts = encode_prompts(tok, builtin_prompts(), bos="auto", max_length=prompt_len) if cfg.diagnose_every_eval else None
    accelerator = make_accelerator(cfg.precision)
    main = accelerator.is_main_process

    def evaluate(tag: str) -> dict:
        row, diag = evaluate_state(loaded, eval_sets, prompts, plan, batch_size=cfg.eval_batch_size)
        if diag is not None and main:
            rel = f"diagnoses/{tag}.json"
            diag.save(run_dir / rel)
            row["diagnosis"] = rel
        return row

    if existing is None:
        manifest = new_manifest(model=loaded.describe(), plan=plan.to_dict(), config=cfg.to_dict(), corpus=corpus.info,
                                other=None if other is None else {"source": cfg.other_corpus, "sequences": len(other)})
        manifest["warnings"] = ad.surgery_warnings()  # e.g. OLMo 2: surgery is not local
        for warning in manifest["warnings"]:
            if main:
                logging.getLogger("headsurgeon").warning("warning: %s", warning)
        manifest["stock"] = evaluate("stock")
    else:
        manifest = existing
    slices = SurgicalSlices(ad, plan, seed=cfg.seed, reinitialise=cfg.reinitialise)
    regions = [r.slice for r in slices.regions]
    if manifest["input_hashes"] is None:
        state0 = loaded.model.state_dict()
        manifest["input_hashes"] = frozen_hashes(state0, regions)
        manifest["surgical_regions"] = [
            {"head": str(r.head), "role": r.role, "param": r.slice.param, "dim": r.slice.dim, "start": r.slice.start, "stop": r.slice.stop, "init": r.init}
            for r in slices.regions
        ]
        manifest["input_region_hashes"] = region_hashes(state0, regions)
    slices.install()
    manifest["trainable_parameters"] = slices.num_parameters()
    if cfg.gradient_checkpointing:
        if hasattr(loaded.model, "activation_checkpointing_enable"):  # transformers >= 5.x name
            loaded.model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            loaded.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    optimizer = torch.optim.AdamW(slices.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    per_epoch = steps_per_epoch(len(corpus.train), cfg, accelerator.num_processes)
    total = cfg.max_steps or cfg.epochs * per_epoch
    if per_epoch < 1:
        raise HeadsurgeonError(
            f"the corpus gives {len(corpus.train)} training sequences of {cfg.seq_len} tokens, fewer than one optimizer step "
            f"needs ({cfg.batch_size * cfg.grad_accum}); use more text, a shorter --seq-len or smaller batches"
        )
    scheduler = make_scheduler(optimizer, cfg, total)
    # Under several processes the training forward goes through DDP; evaluation and saving keep
    # using the plain model (``loaded.model``), which the wrapper shares its parameters with.
    loaded.model.to(accelerator.device)
    train_model = accelerator.prepare_model(loaded.model) if accelerator.num_processes > 1 else loaded.model
    optimizer = accelerator.prepare_optimizer(optimizer)
    state = LoopState()

    resumed = resume_training(run_dir, pieces=slices, optimizer=optimizer, scheduler=scheduler, manifest=manifest) if existing else None
    if resumed is not None:
        state = resumed
    else:
        row = evaluate("step-000000")
        manifest["history"] = [{"step": 0, "epoch": 0.0, "tokens": 0, "lr": 0.0, "label": "after re-initialisation" if cfg.reinitialise else "start (no re-initialisation)", **row}]

    def record(tag: str) -> dict:
        return {"run": str(run_dir), "plan": plan.to_dict(), "config": cfg.to_dict(), "fingerprint": fp,
                "input_hashes": manifest["input_hashes"], "surgical_regions": manifest["surgical_regions"], "tag": tag}

    def checkpoint(step: int) -> None:
        if not main:
            return
        save_training_state(run_dir, step=step, pieces={k: p.data for k, p in slices.named_pieces().items()},
                            optimizer=optimizer, scheduler=scheduler,
                            progress={"step": step, "tokens": state.tokens, "train_seconds": state.train_seconds})
        save_manifest(run_dir, manifest)

    def maybe_best(row: dict) -> None:
        metric = cfg.best_metric
        value = row.get(metric)
        best = manifest["best"]
        if value is not None and is_better(value, None if best is None else best["value"], metric):
            manifest["best"] = {"metric": metric, "value": value, "step": row["step"], "path": "models/best"}
            if main:
                save_model(loaded.model, tok, slices.merged_state_dict(), run_dir / "models" / "best", record("best"))

    if resumed is None:
        maybe_best(manifest["history"][0])
        checkpoint(0)

    def on_step(st: LoopState, epoch_end: bool) -> None:
        if stop_after_step is not None and st.step > stop_after_step:
            raise KeyboardInterrupt(f"simulated kill after step {stop_after_step}")
        last = st.step == total
        if not (st.step % cfg.eval_every == 0 or epoch_end or last):
            return
        row = evaluate(f"step-{st.step:06d}")
        row = {"step": st.step, "epoch": round(st.step / per_epoch, 3), "tokens": st.tokens, "train_loss": round(st.recent_loss, 4),
               "lr": scheduler.get_last_lr()[0], "tokens_per_second": round(st.tokens / max(st.train_seconds, 1e-9), 1),
               "epoch_end": epoch_end, **row}
        manifest["history"].append(row)
        maybe_best(row)
        if epoch_end and cfg.keep_epoch_models and main:
            ep = st.step // per_epoch
            save_model(loaded.model, tok, slices.merged_state_dict(), run_dir / "models" / f"epoch-{ep}", record(f"epoch-{ep}"))
        checkpoint(st.step)

    prefix_cache = None
    if cfg.cache_frozen_prefix:
        prefix_cache = FrozenPrefixCache(ad, min(h.layer for h in plan.targets), len(corpus.train),
                                         max_bytes=int(cfg.prefix_cache_gb * 2**30))
    start = time.perf_counter()
    try:
        state = train_loop(accelerator=accelerator, model=train_model, slices=slices, optimizer=optimizer, scheduler=scheduler,
                           train=corpus.train, cfg=cfg, total_steps=total, state=state, on_step=on_step, progress=progress,
                           prefix_cache=prefix_cache)
    except NonFiniteLoss as exc:
        manifest["status"] = f"stopped: {exc}"
        save_manifest(run_dir, manifest)
        last = latest_training_state(run_dir)
        raise HeadsurgeonError(f"{exc}; stopped, the last good checkpoint is {last}; lower --lr or use --precision fp32") from None
    finally:
        loaded.model.eval()
    final_sd = slices.merged_state_dict()
    if main:
        save_model(loaded.model, tok, final_sd, run_dir / "models" / "final", record("final"))
        manifest["invariant"]["final"] = verify_model_dir(run_dir / "models" / "final")
        if manifest["best"]:
            manifest["invariant"]["best"] = verify_model_dir(run_dir / "models" / "best")
    slices.merge()
    hist = manifest["history"]
    ever_healthy: set[str] = set()
    recollapsed: set[str] = set()
    for row in hist[1:]:
        now_collapsed = set(row.get("targets_collapsed", []))
        recollapsed |= ever_healthy & now_collapsed
        ever_healthy |= {str(h) for h in plan.targets} - now_collapsed
    manifest["outcome"] = {
        "targets": len(plan.targets),
        "targets_healthy_final": hist[-1].get("targets_healthy"),
        "recollapsed_targets": sorted(recollapsed),
        "steps": state.step,
        "tokens": state.tokens,
    }
    if prefix_cache is not None:
        manifest["prefix_cache"] = {"first_layer": prefix_cache.first_layer, "sequences_kept": int(prefix_cache.filled.sum()),
                                    "micro_batches_skipped": prefix_cache.hits, "micro_batches_computed": prefix_cache.fills}
    manifest["timing"] = {"wall_seconds_this_session": time.perf_counter() - start, "train_seconds": state.train_seconds,
                          "tokens_per_second": round(state.tokens / max(state.train_seconds, 1e-9), 1)}
    manifest["status"] = "finished"
    if main:
        save_manifest(run_dir, manifest)
    return SurgeryResult(run_dir, manifest)


def verify_model_dir(model_dir: str | Path) -> dict:
    """Re-hash a saved model's frozen parts against the input hashes recorded beside it."""
    import json

    from safetensors.torch import load_file

    from headsurgeon.models.adapters import TensorSlice

    model_dir = Path(model_dir)
    rec_path = model_dir / "headsurgeon-surgery.json"
    if not rec_path.is_file():
        raise HeadsurgeonError(f"{model_dir} has no headsurgeon-surgery.json; it was not written by `headsurgeon operate`")
    rec = json.loads(rec_path.read_text())
    regions = [TensorSlice(r["param"], r["dim"], r["start"], r["stop"]) for r in rec["surgical_regions"]]
    state: dict[str, torch.Tensor] = {}
    for f in sorted(model_dir.glob("*.safetensors")):
        state.update(load_file(str(f)))
    ref = rec["input_hashes"]
    # Tied weights are stored once; compare what the file holds and report what it omits.
    current = frozen_hashes(state, regions)
    report = compare({k: v for k, v in ref.items() if k in current}, current)
    report["not_stored"] = sorted(set(ref) - set(current))
    return report
