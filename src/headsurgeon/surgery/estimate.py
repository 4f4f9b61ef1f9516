"""What a surgery run will cost, said before it starts: steps, tokens, evaluations, time, memory.

A CPU user who runs ``operate`` with the paper's settings waits over two hours without a word;
this module lets the command say up front what it is about to do. :func:`run_shape` counts
steps, tokens and evaluations from the configuration and the corpus size (no model needed);
:func:`estimate` (``operate --dry-run``) also loads the model, installs the surgical slices on
it in memory, and *measures* one training step, one perplexity batch and one diagnosis batch to
turn those counts into a time, plus the memory the step needed. Nothing is written.
"""

from __future__ import annotations

import resource
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import torch

from headsurgeon.models.cpu_bf16 import enable_for_bf16_on_this_cpu

from .config import SurgeryConfig
from .train import steps_per_epoch


@dataclass(frozen=True)
class RunShape:
    """Counts implied by a configuration and a corpus of ``train_sequences`` training rows."""

    steps: int
    steps_per_epoch: int
    decided_by: str  # "max_steps" or "epochs": which setting fixed the number of steps
    tokens_per_step: int
    tokens: int
    evaluations: int  # stock + step 0 + every eval_every + epoch ends + the last step

    def describe(self) -> str:
        why = "--max-steps" if self.decided_by == "max_steps" else f"{self.steps // max(self.steps_per_epoch, 1)} epochs"
        return (f"{self.steps:,} optimizer steps ({why}; {self.steps_per_epoch:,} steps per epoch) x {self.tokens_per_step:,} tokens "
                f"= {self.tokens:,} training tokens; {self.evaluations} evaluations")


def evaluation_steps(total: int, per_epoch: int, eval_every: int) -> list[int]:
    """Steps after which ``operate`` evaluates (step 0 included; the stock evaluation is extra)."""
    steps = {0, total} | set(range(eval_every, total + 1, eval_every))
    if per_epoch > 0:
        steps |= set(range(per_epoch, total + 1, per_epoch))
    return sorted(steps)


def run_shape(cfg: SurgeryConfig, train_sequences: int, num_processes: int = 1, *, total_steps: int | None = None) -> RunShape:
    """``total_steps``: where this run will end when that is not the configured cap (a study's budget)."""
    per_epoch = steps_per_epoch(train_sequences, cfg, num_processes)
    total = total_steps or cfg.max_steps or cfg.epochs * per_epoch
    per_step = cfg.batch_size * cfg.grad_accum * cfg.seq_len * num_processes
    return RunShape(steps=total, steps_per_epoch=per_epoch, decided_by="max_steps" if cfg.max_steps else "epochs",
                    tokens_per_step=per_step, tokens=total * per_step,
                    evaluations=1 + len(evaluation_steps(total, per_epoch, cfg.eval_every)))


def duration(seconds: float) -> str:
    """``42 s``, ``7 min``, ``2 h 21 min``: rounded the way a person plans around."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


@dataclass
class RunEstimate:
    """``operate --dry-run``: the run's shape, measured step and evaluation times, and memory."""

    preset: str | None
    shape: RunShape
    trainable_parameters: int
    model_parameters: int
    step_seconds: float  # one optimizer step, measured (the second of two, the first warms up)
    evaluation_seconds: float  # one evaluation (3 perplexity sets + a diagnosis), from measured batches
    train_seconds: float
    total_seconds: float
    weights_bytes: int
    optimizer_bytes: int  # trainable slices: fp32 value + gradient + two AdamW moments
    peak_memory_bytes: int | None  # measured: process peak RSS on CPU, peak allocated on CUDA
    device: str

    def to_dict(self) -> dict:
        return {**asdict(self), "shape": asdict(self.shape)}

    def lines(self) -> list[str]:
        gib = 2**30
        peak = "n/a" if self.peak_memory_bytes is None else f"{self.peak_memory_bytes / gib:.2f} GiB"
        return [
            f"preset: {self.preset or 'custom'} · device: {self.device}",
            f"trainable parameters: {self.trainable_parameters:,} of {self.model_parameters:,} "
            f"({100 * self.trainable_parameters / max(self.model_parameters, 1):.3f}%)",
            f"run: {self.shape.describe()}",
            f"time: one step {self.step_seconds:.2f} s, one evaluation ~{duration(self.evaluation_seconds)} (measured now) -> "
            f"training ~{duration(self.train_seconds)}, in all ~{duration(self.total_seconds)}",
            f"memory: weights {self.weights_bytes / gib:.2f} GiB, trainable slices with gradients and AdamW state "
            f"{self.optimizer_bytes / 2**20:.1f} MiB; peak during the measured step {peak}",
        ]


def _peak_memory(device: torch.device) -> int | None:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    if sys.platform.startswith("linux"):
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # KiB on Linux
    return None


def estimate(model, plan, config: SurgeryConfig | None = None, *, preset: str | None = None, progress: bool = True,
             allow_other_model: bool = False, device: str = "cpu", dtype: str = "fp32", placement=None) -> RunEstimate:
    """Measure what ``operate(model, plan, config=config)`` would cost, without writing anything.

    The model is changed in memory (slices installed, one optimizer-free backward); pass a
    freshly loaded model or a spec, not one you still need unchanged. ``device``, ``dtype`` and
    ``placement`` load a spec as :func:`~.operate.operate` does.
    """
    from headsurgeon.corpus import spread_rows
    from headsurgeon.diagnosis.collect import collect_head_stats
    from headsurgeon.models import LoadedModel, load_model

    from .data import run_data
    from .plan import SurgeryPlan
    from .preflight import check_run_inputs, check_training_dtype
    from .slices import SurgicalSlices
    from .training_run import check_trainable_placement

    cfg = config or SurgeryConfig()
    plan = plan if isinstance(plan, SurgeryPlan) else SurgeryPlan.load(plan)
    check_training_dtype(dtype, cfg)
    loaded = model if isinstance(model, LoadedModel) else load_model(model, progress=progress, device=device, dtype=dtype,
                                                                     placement=placement)
    check_trainable_placement(loaded)
    ad = loaded.adapter
    plan.check_against(ad.num_layers, ad.num_heads, loaded.name)
    check_run_inputs(plan, loaded.describe(), ad.max_positions, cfg, allow_other_model=allow_other_model)
    data = run_data(loaded, cfg, progress=progress)  # the very corpus and prompts operate would use
    corpus = data.corpus
    shape = run_shape(cfg, len(corpus.train))
    m = loaded.model
    n_params = sum(p.numel() for p in m.parameters())
    weights = sum(p.numel() * p.element_size() for p in m.parameters())
    slices = SurgicalSlices(ad, plan, seed=cfg.seed, reinitialise=cfg.reinitialise)
    slices.install()
    dev = loaded.device
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    if cfg.precision == "bf16":  # measured as the run will compute: widened where bf16 is slow
        enable_for_bf16_on_this_cpu(torch.bfloat16, dev)
    autocast = (torch.autocast(device_type=dev.type, dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[cfg.precision])
                if cfg.precision != "fp32" else nullcontext())
    rows = corpus.train[: cfg.batch_size]

    def one_step(micro_batches: int) -> float:
        t0 = time.perf_counter()
        m.train()
        with ad.training_attention():
            for _ in range(micro_batches):
                ids = rows.to(dev)
                with autocast:
                    loss = m(input_ids=ids, labels=ids, use_cache=False).loss
                (loss / cfg.grad_accum).backward()
        for p in slices.parameters():
            p.grad = None
        return time.perf_counter() - t0

    if progress:  # a step of the paper's settings is 8 backward passes of 512 tokens: minutes on a CPU, say so
        extras = [x for x, on in ((f"{cfg.precision} autocast", cfg.precision != "fp32"),
                                  ("gradient checkpointing", cfg.gradient_checkpointing)) if on]
        print(f"measuring one training step ({cfg.grad_accum} x {cfg.batch_size} x {cfg.seq_len} tokens"
              f"{', ' + ', '.join(extras) if extras else ''}) and one evaluation on {dev.type} ...", file=sys.stderr, flush=True)
    one_step(1)  # warm-up (first-call allocations): one micro-batch is enough, a whole step doubled the wait
    step_s = one_step(cfg.grad_accum)
    peak = _peak_memory(dev)
    m.eval()
    with torch.no_grad():
        eval_rows = spread_rows(corpus.train, cfg.eval_batch_size).to(dev)
        t0 = time.perf_counter()
        m(input_ids=eval_rows, use_cache=False)
        ppl_batch_s = time.perf_counter() - t0
    sets = 3 if cfg.other_corpus else 2
    eval_s = sets * -(-cfg.eval_sequences // cfg.eval_batch_size) * ppl_batch_s
    if data.prompts:
        prompts = data.prompts
        t0 = time.perf_counter()
        collect_head_stats(loaded, prompts[:4], batch_size=4, progress=False)
        eval_s += (time.perf_counter() - t0) * -(-len(prompts) // 4)
    trainable = slices.num_parameters()
    train_s = step_s * shape.steps
    return RunEstimate(preset=preset, shape=shape, trainable_parameters=trainable, model_parameters=n_params, step_seconds=step_s,
                       evaluation_seconds=eval_s, train_seconds=train_s, total_seconds=train_s + shape.evaluations * eval_s,
                       weights_bytes=weights, optimizer_bytes=trainable * 4 * 4, peak_memory_bytes=peak, device=str(dev))
