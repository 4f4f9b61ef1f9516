"""Training one lab model: one (encoding, seed) run, diagnosed at every checkpoint, resumable.

Run folder ``runs/<encoding>-s<seed>/``:

* ``run.json`` (kind ``lab_run``): config, encoding, seed, architecture, parameter counts,
  status (``running`` / ``finished``), timing and one row per checkpoint (written after each);
* ``diagnoses/step-<N>.json``: the full headsurgeon diagnosis at step N;
* ``state/``: the training state after the last checkpoint (removed when the run finishes);
* ``model/``: the finished model and tokenizer (``save_pretrained``: every headsurgeon
  command accepts it).

The same seed gives every encoding the same batch order (:func:`iterate_batches` seeded with
it); model init is drawn from a forked RNG seeded with it.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from headsurgeon.corpus import iterate_batches, num_batches
from headsurgeon.errors import HeadsurgeonError
from headsurgeon.models import wrap_model

from .architectures import ARCHITECTURE, build_model, parameter_counts
from .config import LabConfig
from .data import LabData
from .probe import measure_checkpoint
from .results import RunRecord, fingerprint
from .state import load_state, save_state


def lr_at(step: int, cfg: LabConfig) -> float:
    """Learning rate of optimiser step ``step`` (1-based): linear warm-up, cosine decay."""
    if cfg.warmup_steps and step <= cfg.warmup_steps:
        return cfg.lr * step / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(model: torch.nn.Module, cfg: LabConfig) -> torch.optim.Optimizer:
    """AdamW; decay on matrices only, the same rule for every architecture."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                             lr=cfg.lr, betas=(0.9, cfg.beta2), eps=1e-8)


def batch_at(data: LabData, cfg: LabConfig, seed: int, step: int) -> torch.Tensor:
    """The batch of optimiser step ``step`` (1-based): a pure function of (seed, step)."""
    per_epoch = num_batches(int(data.train.shape[0]), cfg.batch_size, drop_last=True)
    if per_epoch < 1:
        raise HeadsurgeonError(f"the training split has {data.train.shape[0]} sequences, fewer than one batch of {cfg.batch_size}; add text or lower batch_size")
    epoch, index = divmod(step - 1, per_epoch)
    return next(iterate_batches(data.train, cfg.batch_size, seed=seed, epoch=epoch, start=index, drop_last=True))


def train_run(encoding: str, seed: int, cfg: LabConfig, data: LabData, run_dir: Path, *, progress: bool = True,
              stop_after_step: int | None = None) -> RunRecord:
    """Train (or resume, or reuse) one run; returns its record. ``stop_after_step`` stops after
    training that step, as a kill would (tests): what is on disk is the last checkpoint's state."""
    name = f"lab-{encoding}-s{seed}"
    fp = fingerprint(cfg, encoding, seed, data.info)
    record = RunRecord.open(run_dir, fp, name=name, encoding=encoding, seed=seed, config=cfg)
    if record.status == "finished":
        return record
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _train(encoding, seed, cfg, data, run_dir, record, fp, name, progress, stop_after_step)
    finally:
        torch.set_num_threads(threads)


def _train(encoding, seed, cfg, data, run_dir, record, fp, name, progress, stop_after_step) -> RunRecord:
    model = build_model(encoding, cfg, data.tokenizer, seed=seed, name=name)
    loaded = wrap_model(model, data.tokenizer, name=name)
    optimizer = make_optimizer(model, cfg)
    record.architecture = {"family": ARCHITECTURE[encoding], "model_type": model.config.model_type,
                           "parameters": parameter_counts(model), **loaded.adapter.describe()}
    state_dir = run_dir / "state"
    start = 0
    if (state_dir / "state.json").is_file() and record.rows:
        start = int(load_state(state_dir, model, optimizer)["step"])
        record.rows = [r for r in record.rows if r["step"] <= start]
    elif record.rows:
        record.rows = []  # rows without a state to continue from: start over
    checkpoints = cfg.checkpoint_steps
    losses: list[float] = []
    timing = record.timing
    timing.setdefault("train_seconds", 0.0)
    timing.setdefault("measure_seconds", 0.0)
    timing.setdefault("load_average_at_start", list(os.getloadavg()))

    def checkpoint(step: int) -> None:
        t0 = time.perf_counter()
        row, diag = measure_checkpoint(loaded, data, cfg)
        model.train()
        diag.save(run_dir / "diagnoses" / f"step-{step}.json")
        row = {"step": step, "tokens": step * cfg.batch_size * cfg.seq_len,
               "train_loss": float(sum(losses) / len(losses)) if losses else None, **row}
        losses.clear()
        record.rows.append(row)
        timing["measure_seconds"] += time.perf_counter() - t0
        if step < cfg.steps:
            save_state(state_dir, model, optimizer, step=step, extra={"fingerprint": fp})
        record.write()

    if start == 0:
        checkpoint(0)
    model.train()
    bar = tqdm(total=cfg.steps, initial=start, desc=name, unit="step", disable=not progress, dynamic_ncols=True)
    try:
        for step in range(start + 1, cfg.steps + 1):
            if stop_after_step is not None and step > stop_after_step:
                return record
            t0 = time.perf_counter()
            x = batch_at(data, cfg, seed, step)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, cfg)
            with loaded.adapter.training_attention():
                loss = model(input_ids=x, labels=x, use_cache=False).loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.clip_norm:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
                optimizer.step()
            losses.append(float(loss.detach()))
            timing["train_seconds"] += time.perf_counter() - t0
            timing["steps_done"] = step
            bar.update(1)
            if step in checkpoints:
                checkpoint(step)
    finally:
        bar.close()
    timing["seconds_per_step"] = timing["train_seconds"] / cfg.steps
    timing["load_average_at_end"] = list(os.getloadavg())
    save_model(loaded, run_dir / "model")
    record.status = "finished"
    record.write()
    shutil.rmtree(state_dir, ignore_errors=True)
    return record


def save_model(loaded, folder: Path) -> None:
    """``save_pretrained`` model + tokenizer, written beside and renamed into place."""
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    loaded.model.save_pretrained(str(tmp))
    loaded.tokenizer.save_pretrained(str(tmp))
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
