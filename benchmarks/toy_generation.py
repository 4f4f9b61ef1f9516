"""Is Bigram-Backcopy generation a bottleneck? Time one batch of generation vs one training step.

Usage:
    python benchmarks/toy_generation.py                 # small presets, paper generation only
    python benchmarks/toy_generation.py --paper-steps   # also time paper-size steps (~17 s each)
    python benchmarks/toy_generation.py --threads 1 --repeats 20

For every preset it prints the median time to generate one training batch (batch_size x
(seq_len + 1) tokens), the median time of one optimiser step (forward, backward, update) and
their ratio. The CPU is shared, so medians over several repeats are reported.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from headsurgeon.toy.config import PRESETS
from headsurgeon.toy.train import build_model, make_optimizer, task_for


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads for every preset (0 = each preset's own setting)")
    ap.add_argument("--paper-steps", action="store_true", help="also time paper-size steps")
    args = ap.parse_args()
    default_threads = torch.get_num_threads()
    task = task_for(PRESETS["tiny-1l"][1])
    print(f"{'preset':10s} {'threads':>7s} {'batch x len':>12s} {'generate ms':>12s} "
          f"{'step ms':>10s} {'gen/step':>9s}")
    for name, (_, cfg) in PRESETS.items():
        torch.set_num_threads(args.threads or cfg.threads or default_threads)
        gen = torch.Generator().manual_seed(0)
        g_ms = _median_ms(lambda: task.generate(cfg.batch_size, cfg.seq_len + 1, gen), args.repeats)
        shape = f"{torch.get_num_threads():7d} {cfg.batch_size:>5d} x {cfg.seq_len + 1:<4d}"
        if name.startswith("paper") and not args.paper_steps:
            print(f"{name:10s} {shape:>20s} {g_ms:12.2f} {'(skipped)':>10s}")
            continue
        model = build_model(cfg, task.vocab_size)
        opt = make_optimizer(cfg, model)
        x = task.generate(cfg.batch_size, cfg.seq_len + 1, gen)

        def step() -> None:
            logits = model(x[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        step()  # warm-up
        s_ms = _median_ms(step, 2 if name.startswith("paper") else args.repeats)
        print(f"{name:10s} {shape:>20s} {g_ms:12.2f} {s_ms:10.2f} {g_ms / s_ms:9.3f}")


if __name__ == "__main__":
    main()
