"""The surgical training loop (on ``accelerate``).

Only the run's trainable tensors are trained (surgical slices, see :mod:`.slices`, or LoRA matrices). AdamW, linear warmup then cosine
decay, gradient accumulation, clipping, fp32 or bf16 autocast (the pieces stay fp32: they are
the master copies), gradient checkpointing. ``accelerate launch`` runs it data-parallel: each
process takes every ``num_processes``-th micro-batch and only the main process writes.

The data order is a pure function of ``(seed, epoch)`` and a run's position is its optimizer
step, so a resumed run replays exactly what an uninterrupted run would have done.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from headsurgeon.corpus import epoch_order
from headsurgeon.errors import HeadsurgeonError
from headsurgeon.models.cpu_bf16 import enable_for_bf16_on_this_cpu

from .config import SurgeryConfig
from .prefix_cache import FrozenPrefixCache


class NonFiniteLoss(HeadsurgeonError):
    """Training produced a NaN or inf loss."""


@dataclass
class LoopState:
    step: int = 0
    tokens: int = 0
    train_seconds: float = 0.0
    recent_loss: float = float("nan")
    #: sum and count of step losses since the last evaluation (its row records their mean: one
    #: step's loss moves with its few sequences, the mean over the window is the trend)
    window_loss_sum: float = 0.0
    window_steps: int = 0

    def add_step_loss(self, loss: float) -> None:
        self.recent_loss = loss
        self.window_loss_sum += loss
        self.window_steps += 1

    def take_window_mean(self) -> float:
        """The mean step loss since the previous call (an evaluation), and a new window."""
        mean = self.window_loss_sum / self.window_steps
        self.window_loss_sum, self.window_steps = 0.0, 0
        return mean


def steps_per_epoch(n_sequences: int, cfg: SurgeryConfig, num_processes: int = 1) -> int:
    return (n_sequences // cfg.batch_size) // (cfg.grad_accum * num_processes)


def make_accelerator(precision: str, *, cpu: bool = False):
    """An ``Accelerator`` for this run's precision.

    accelerate keeps one process-wide state and refuses a second precision in the same process
    (a notebook, or a study running fp32 and bf16 arms); in a single process we reset it, under
    ``accelerate launch`` the launcher's settings win.

    Several processes without a GPU (``torchrun --nproc_per_node N -m headsurgeon operate ...``)
    need ``cpu=True``: without it accelerate falls back to one process per launch, and every
    process would train alone and write the same run folder. ``cpu``: the model was loaded on
    the CPU (``--device cpu``), so train there even when a GPU is visible.
    """
    import os

    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState

    if AcceleratorState._shared_state and PartialState().num_processes == 1:
        AcceleratorState._reset_state()
    multi_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    accelerator = Accelerator(mixed_precision={"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[precision], cpu=multi_cpu or cpu)
    if precision == "bf16":  # autocast's bf16 products on a CPU without native bf16: widened
        enable_for_bf16_on_this_cpu(torch.bfloat16, accelerator.device)
    return accelerator


def make_scheduler(optimizer, cfg: SurgeryConfig, total_steps: int):
    from transformers import get_cosine_schedule_with_warmup

    return get_cosine_schedule_with_warmup(optimizer, int(cfg.warmup_fraction * total_steps), total_steps)


def _mean_over_processes(accelerator, value: float, processes: int) -> float:
    """The step's loss over every process's micro-batches (each has as many), not only the main
    process's share: the number the manifest records is then the same however the run is split."""
    if processes == 1:
        return value
    return float(accelerator.reduce(torch.tensor([value], dtype=torch.float64, device=accelerator.device), reduction="mean").item())


def _accumulate(accelerator, model, train, order, first_micro, rank, P, cfg, state, prefix_cache) -> list[float]:
    """Forward and backward of one optimizer step's micro-batches (this process's share); their losses."""
    losses = []
    for k in range(cfg.grad_accum):
        micro = first_micro + k * P + rank
        rows = order[micro * cfg.batch_size : (micro + 1) * cfg.batch_size]
        ids = train[rows].to(accelerator.device)
        with accelerator.autocast(), (prefix_cache.batch(rows) if prefix_cache is not None else nullcontext()):
            loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        if not torch.isfinite(loss):
            raise NonFiniteLoss(f"loss became {loss.item()} at step {state.step + 1}")
        if k < cfg.grad_accum - 1 and P > 1:
            with accelerator.no_sync(model):
                accelerator.backward(loss / cfg.grad_accum)
        else:
            accelerator.backward(loss / cfg.grad_accum)
        losses.append(loss.item())
        state.tokens += ids.numel() * P
    return losses


def train_loop(
    *,
    accelerator,
    model: torch.nn.Module,
    slices,
    optimizer,
    scheduler,
    train: torch.Tensor,
    cfg: SurgeryConfig,
    total_steps: int,
    state: LoopState,
    on_step: Callable[[LoopState, bool], bool | None],
    progress: bool = True,
    prefix_cache: FrozenPrefixCache | None = None,
    label: str = "surgery",
) -> LoopState:
    """Run optimizer steps ``state.step + 1 .. total_steps``; ``on_step(state, epoch_end)`` after each
    (a true return value stops the loop there: early stopping).

    ``slices`` is the run's :class:`~headsurgeon.surgery.training_run.Trainable` (surgical
    slices or LoRA matrices): its ``parameters()`` are clipped and checked for gradients."""
    P, rank = accelerator.num_processes, accelerator.process_index
    per_epoch = steps_per_epoch(len(train), cfg, P)
    if per_epoch < 1:
        raise HeadsurgeonError(
            f"the corpus has {len(train)} training sequences, fewer than one optimizer step needs "
            f"({cfg.batch_size * cfg.grad_accum * P}); use more text or lower --batch-size/--grad-accum"
        )
    pieces = slices.parameters()
    adapter = getattr(slices, "adapter", None)  # surgical slices and LoRA pieces both carry one: SDPA for the steps
    grad_seen = [False] * len(pieces)
    bar = tqdm(total=total_steps, initial=state.step, desc=label, unit="step", disable=not (progress and accelerator.is_main_process))
    model.train()
    while state.step < total_steps:
        epoch, in_epoch = divmod(state.step, per_epoch)
        order = epoch_order(len(train), shuffle=True, seed=cfg.seed, epoch=epoch)
        first_micro = in_epoch * cfg.grad_accum * P
        t0 = time.perf_counter()
        with adapter.training_attention() if adapter is not None else nullcontext():
            losses = _accumulate(accelerator, model, train, order, first_micro, rank, P, cfg, state, prefix_cache)
        for i, p in enumerate(pieces):
            grad_seen[i] = grad_seen[i] or (p.grad is not None and bool(p.grad.abs().sum() > 0))
        if cfg.clip_norm > 0:
            accelerator.clip_grad_norm_(pieces, cfg.clip_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state.step += 1
        state.train_seconds += time.perf_counter() - t0
        state.add_step_loss(_mean_over_processes(accelerator, sum(losses) / len(losses), P))
        if state.step == 3 and not all(grad_seen):
            raise HeadsurgeonError(
                f"{grad_seen.count(False)} surgical slices received no gradient in the first 3 steps; "
                "gradients do not reach them (gradient checkpointing with frozen inputs?) - report this"
            )
        tok_s = state.tokens / max(state.train_seconds, 1e-9)
        bar.set_postfix(loss=f"{state.recent_loss:.3f}", ppl=f"{math.exp(min(state.recent_loss, 50)):.1f}", tok_s=f"{tok_s:.0f}")
        bar.update(1)
        epoch_end = state.step % per_epoch == 0
        if on_step(state, epoch_end):
            break
        model.train()
    bar.close()
    return state
