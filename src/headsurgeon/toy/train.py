"""The training loop: fresh seeded BB batches, AdamW or SGD, dynamics on a fixed eval batch.

Seeds: the model is initialised under ``seed`` inside a forked RNG (the caller's global torch
RNG is left alone), training batches come from a generator seeded with ``seed`` and the
evaluation batch from one seeded with ``seed + 1``, so two runs with one config are identical
and the dynamics of different variants are measured on the same sequences.

Timing is split: generating a batch vs one optimiser step (forward, backward, update), so the
claim "generation is not the bottleneck" is measured on every run, not assumed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.toy.config import ToyConfig
from headsurgeon.toy.dynamics import DynamicsThresholds, measure, summarize
from headsurgeon.toy.model import ToyTransformer
from headsurgeon.toy.results import ToyRunResult
from headsurgeon.toy.task import BigramBackcopy, build_task


def task_for(config: ToyConfig) -> BigramBackcopy:
    """The task instance a config describes (text file or offline default)."""
    return build_task(text_path=config.text_path, n_chars=config.n_chars,
                      n_triggers=config.n_triggers, lowercase=config.lowercase,
                      whitespace_triggers=config.whitespace_triggers)


def make_optimizer(config: ToyConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    # betas (0.9, 0.99) as in the paper's training script
    return torch.optim.AdamW(model.parameters(), lr=config.lr, betas=(0.9, 0.99), eps=1e-8,
                             weight_decay=config.weight_decay)


def build_model(config: ToyConfig, vocab_size: int) -> ToyTransformer:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return ToyTransformer.from_config(config, vocab_size)


def train(config: ToyConfig, *, out_dir: str | Path | None = None, progress: bool = True,
          task: BigramBackcopy | None = None, thresholds: DynamicsThresholds = DynamicsThresholds(),
          label: str = "", on_log: Callable[[int, dict], None] | None = None) -> ToyRunResult:
    """Train one toy model and return its dynamics, final summary and timing.

    ``out_dir`` (optional) receives ``toy_run.json``, ``dynamics.csv``, ``dynamics.png`` and
    ``model.safetensors``. ``task`` lets several runs share one task instance (it must match the
    config). ``on_log(step, row)`` is called after every measurement.
    """
    if out_dir is not None:
        from headsurgeon.io import ensure_output_dir

        ensure_output_dir(out_dir)  # an existing file or a read-only place fails before training
    task = task or task_for(config)
    old_threads = torch.get_num_threads()
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    try:
        result = _train(config, task, progress, thresholds, label, on_log)
    finally:
        torch.set_num_threads(old_threads)
    if out_dir is not None:
        save(result, out_dir)
    return result


def _train(config, task, progress, thresholds, label, on_log) -> ToyRunResult:
    model = build_model(config, task.vocab_size)
    model.train()
    opt = make_optimizer(config, model)
    gen = torch.Generator().manual_seed(config.seed)
    eval_x = task.generate(config.eval_batch_size, config.seq_len + 1,
                           torch.Generator().manual_seed(config.seed + 1))
    columns: dict[str, list[float]] = {"step": []}

    def log(step: int) -> dict:
        row = measure(model, eval_x, task)
        columns["step"].append(step)
        for k, v in row.items():
            columns.setdefault(k, []).append(v)
        if on_log is not None:
            on_log(step, row)
        return row

    gen_s = step_s = eval_s = 0.0
    t_start = time.perf_counter()
    row = log(0)
    bar = tqdm(total=config.steps, disable=not progress, unit="step", dynamic_ncols=True,
               desc=label or f"{config.n_layers}L {config.attention} {config.optimizer}")
    for step in range(1, config.steps + 1):
        t0 = time.perf_counter()
        x = task.generate(config.batch_size, config.seq_len + 1, gen)  # +1: last target
        t1 = time.perf_counter()
        logits = model(x[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        t2 = time.perf_counter()
        gen_s, step_s = gen_s + (t1 - t0), step_s + (t2 - t1)
        if not torch.isfinite(loss):
            bar.close()
            raise HeadsurgeonError(f"training diverged at step {step} (loss {loss.item()}); "
                                   "lower the learning rate")
        if step % config.log_every == 0 or step == config.steps:
            row = log(step)
            eval_s += time.perf_counter() - t2
            copy_key = max((k for k in row if k.endswith(".copy_attn_trigger")), key=row.get)
            head = copy_key.split(".")[0]
            bar.set_postfix(loss=f"{row['loss']:.3f}",
                            bos=f"{row[head + '.bos_attn_nontrigger']:.2f}", refresh=False)
        bar.update(1)
    bar.close()
    wall = time.perf_counter() - t_start
    n = config.steps
    timing = {
        "steps_per_s": n / wall,
        "train_steps_per_s": n / (gen_s + step_s),
        "generation_ms_per_batch": 1000 * gen_s / n,
        "step_ms": 1000 * step_s / n,
        "generation_fraction": gen_s / (gen_s + step_s),
        "eval_s_total": eval_s,
        "wall_s": wall,
        "threads": torch.get_num_threads(),
    }
    summary = summarize(tail_mean(columns, config.steps), config.n_layers, thresholds)
    return ToyRunResult(config=config, task=task.describe(), dynamics=columns, summary=summary,
                        timing=timing, model=model)


def tail_mean(columns: dict[str, list[float]], steps: int, fraction: float = 0.1) -> dict:
    """Mean of every metric over the rows logged in the last ``fraction`` of training.

    One logged row is one eval batch at one step, and attention/norm ratios jitter from step
    to step (by +-0.1 on the tiny preset); averaging the tail gives the end state of a run.
    """
    keep = [i for i, s in enumerate(columns["step"]) if s >= steps * (1 - fraction)]
    keep = keep or [len(columns["step"]) - 1]
    return {k: sum(v[i] for i in keep) / len(keep) for k, v in columns.items() if k != "step"}


def save(result: ToyRunResult, out_dir: str | Path) -> dict[str, str]:
    """Write JSON, CSV, the dynamics figure and the model weights of ``result``."""
    from headsurgeon.toy.figures import plot_dynamics

    out = Path(out_dir)
    files = result.write(out)
    png = out / "dynamics.png"
    files["png"] = str(plot_dynamics(result, png))
    if result.model is not None:
        from safetensors.torch import save as safetensors_bytes

        from headsurgeon.io import atomic_write_bytes

        # safetensors, not torch.save: nothing headsurgeon writes needs unpickling to read
        path = out / "model.safetensors"
        state = {k: v.detach().contiguous().cpu() for k, v in result.model.state_dict().items()}
        meta = {"config": json.dumps(result.config.to_dict()), "task": json.dumps(result.task, default=str)}
        atomic_write_bytes(path, safetensors_bytes(state, metadata=meta))
        files["model"] = str(path)
    result.files.update(files)
    result.write(out)  # again, so the JSON lists every file
    return files
