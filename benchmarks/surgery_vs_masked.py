"""Surgical-slice training versus the paper's way (whole matrices + gradient masks), one run.

    python benchmarks/surgery_vs_masked.py [--targets 20 | --plan PLAN] [--steps 4] [--seq-len 128] [--batch-size 2] [--precision fp32]

On the default model (SmolLM2-135M) with the ``--targets`` heads of highest BOS mass:

* **surgical** — :class:`headsurgeon.surgery.SurgicalSlices`: only the target slices are
  parameters; AdamW holds state for them alone;
* **masked** — the paper's way: every Q/K/V/O weight matrix of a layer that holds a target is
  trainable, gradient hooks zero everything outside the targets' slices, AdamW over the whole
  matrices (no weight decay, so masked elements stay put);
* **cached** — ``surgical`` plus :class:`headsurgeon.surgery.prefix_cache.FrozenPrefixCache`
  (``--cache-frozen-prefix``), timed on steps that revisit the warm-up step's sequences, i.e.
  a step of the second or a later epoch: the layers below the lowest target are not run;
* **floor** — a control, not a method: nothing is trainable, the residual stream entering the
  first target layer is made to require a gradient, and the same forward and backward run. No
  weight gradient is computed at all, so this is the least any method that trains these heads
  by backpropagation must spend; it shows how much of a step the surgery could possibly save.

All use the attention implementation ``operate`` trains with (PyTorch SDPA; diagnosis alone
needs eager). Both methods use the same re-initialised values, batches, precision (autocast) and gradient
checkpointing setting (the cpu preset's defaults: fp32, no checkpointing). Each variant runs in its own process; after the model is loaded and one warm-up
step is done, the resident high-water mark is reset and ``--steps`` optimizer steps are timed.
The variants run in turn, ``--rounds`` times (load on a shared machine drifts over minutes).
Printed: median step time over all rounds (wall and CPU), peak extra resident memory (the
largest of the rounds), trainable and
optimizer-state element counts, and the ratios surgical / masked.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from diagnose_vs_naive import _cpu_seconds, read_peak, reset_peak  # noqa: E402  (shared memory probes)

VARIANTS = ("surgical", "cached", "masked", "floor")


def build(variant: str, targets: int, plan_path: str | None = None):
    import torch

    from headsurgeon.diagnosis import diagnose
    from headsurgeon.models import load_model
    from headsurgeon.surgery import SurgeryPlan, SurgicalSlices, make_plan

    loaded = load_model(None, progress=False)
    plan = SurgeryPlan.load(plan_path) if plan_path else make_plan(diagnose(loaded, progress=False), top=targets)
    slices = SurgicalSlices(loaded.adapter, plan, seed=0)
    if variant in ("surgical", "cached"):
        slices.install()
        return loaded, slices.parameters(), plan
    if variant == "floor":
        for p in loaded.model.parameters():
            p.requires_grad_(False)
        first = min(h.layer for h in plan.targets)

        def needs_grad(module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            hidden = hidden.detach().requires_grad_(True)
            if args:
                return (hidden, *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": hidden}

        loaded.adapter.block(first).register_forward_pre_hook(needs_grad, with_kwargs=True)
        return loaded, [], plan
    params = dict(loaded.model.named_parameters())
    for p in params.values():
        p.requires_grad_(False)
    masks: dict[str, torch.Tensor] = {}
    layers = {h.layer for h in plan.targets}
    with torch.no_grad():
        for region, value in zip(slices.regions, slices._values):
            region.slice.view(params[region.slice.param].data).copy_(value)
        for layer in layers:  # whole Q/K/V/O matrices of every touched layer, as in the paper
            s = loaded.adapter.head_slices(layer, 0)
            for sl in (s.q_weight, s.k_weight, s.v_weight, s.o_weight):
                masks.setdefault(sl.param, torch.zeros_like(params[sl.param]))
        for region in slices.regions:
            if region.slice.param in masks:
                region.slice.view(masks[region.slice.param]).fill_(1.0)
    trainable = []
    for name, mask in masks.items():
        p = params[name]
        p.requires_grad_(True)
        p.register_hook(lambda g, m=mask: g * m)
        trainable.append(p)
    return loaded, trainable, plan


def worker(variant: str, args, result_path: str) -> None:
    import torch

    loaded, params, plan = build(variant, args.targets, args.plan)
    model = loaded.model
    model.config.use_cache = False
    if args.checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    torch.set_num_threads(args.threads)
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0) if params else None
    gen = torch.Generator().manual_seed(0)
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    cache = None
    if variant == "cached":  # steps of a later epoch: the same rows again, their frozen prefix kept
        from headsurgeon.surgery.prefix_cache import FrozenPrefixCache

        cache = FrozenPrefixCache(loaded.adapter, min(h.layer for h in plan.targets), args.batch_size, max_bytes=1 << 34)
        fixed = torch.randint(0, model.config.vocab_size, (args.batch_size, args.seq_len), generator=gen)
    rows = torch.arange(args.batch_size)

    def step():
        ids = fixed if cache is not None else torch.randint(0, model.config.vocab_size, (args.batch_size, args.seq_len), generator=gen)
        attention = loaded.adapter.training_attention() if args.attention == "sdpa" else nullcontext()
        with torch.autocast("cpu", dtype=dtype, enabled=args.precision == "bf16"), (cache.batch(rows) if cache else nullcontext()), \
                attention:  # every variant trains with the same attention; `operate` uses SDPA
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
        if opt is not None:
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)

    step()  # warm-up: allocates optimizer state (and fills the prefix cache)
    base, method = reset_peak()
    wall, cpu = [], []
    for _ in range(args.steps):
        t0, c0 = time.perf_counter(), _cpu_seconds()
        step()
        wall.append(time.perf_counter() - t0)
        cpu.append(_cpu_seconds() - c0)
    peak = read_peak(method) - base
    state = 0 if opt is None else sum(t.numel() for s in opt.state.values() for t in s.values() if torch.is_tensor(t) and t.ndim > 0)
    Path(result_path).write_text(json.dumps({
        "variant": variant,
        "step_seconds": statistics.median(wall),
        "step_seconds_all": [round(w, 4) for w in wall],
        "step_cpu_seconds_all": [round(c, 4) for c in cpu],
        "step_cpu_seconds": statistics.median(cpu),
        "peak_extra_mib": peak / 1024,
        "trainable_elements": sum(p.numel() for p in params),
        "optimizer_state_elements": state,
        "targets": len(plan.targets),
        "prefix_skipped_micro_batches": cache.hits if cache else None,
        "memory_method": method,
    }))


def torch_threads_default() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", type=int, default=20)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--checkpointing", action="store_true", help="gradient checkpointing in both variants")
    ap.add_argument("--plan", help="use this plan file instead of diagnosing and taking the top --targets heads")
    ap.add_argument("--threads", type=int, default=torch_threads_default(), help="torch threads per variant (default: all cores)")
    ap.add_argument("--attention", choices=("sdpa", "eager"), default="sdpa", help="attention implementation of the training steps (operate uses sdpa)")
    ap.add_argument("--rounds", type=int, default=2, help="run the variants in turn this many times (load drifts on shared machines); medians over all rounds")
    ap.add_argument("--worker", choices=VARIANTS)
    ap.add_argument("--result")
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args, args.result)
        return
    rounds: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for _ in range(args.rounds):
        for variant in VARIANTS:
            with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
                out = fh.name
            cmd = [sys.executable, __file__, "--worker", variant, "--result", out, "--targets", str(args.targets), "--steps", str(args.steps),
                   "--seq-len", str(args.seq_len), "--threads", str(args.threads), "--attention", args.attention, "--batch-size", str(args.batch_size), "--precision", args.precision] + (["--checkpointing"] if args.checkpointing else []) + (["--plan", args.plan] if args.plan else [])
            subprocess.run(cmd, check=True)
            rounds[variant].append(json.loads(Path(out).read_text()))
    results = {}
    for variant, runs in rounds.items():
        merged = dict(runs[0])
        merged["step_seconds_all"] = [w for r in runs for w in r["step_seconds_all"]]
        merged["step_cpu_seconds_all"] = [c for r in runs for c in r["step_cpu_seconds_all"]]
        merged["step_seconds"] = statistics.median(merged["step_seconds_all"])
        merged["step_cpu_seconds"] = statistics.median(merged["step_cpu_seconds_all"])
        merged["peak_extra_mib"] = max(r["peak_extra_mib"] for r in runs)
        results[variant] = merged
    s, c, m, f = results["surgical"], results["cached"], results["masked"], results["floor"]
    print(f"SmolLM2-135M, {s['targets']} target heads, {args.rounds} rounds x {args.steps} steps of {args.batch_size}x{args.seq_len} tokens, "
          f"{args.precision}, gradient checkpointing {'on' if args.checkpointing else 'off'}, {args.threads} thread(s), {args.attention} attention")
    print("columns: surgical slices; the same with the frozen prefix cached (a step of a later epoch); the paper's masked whole\n"
          "matrices; a floor with no weight gradient at all. Ratios against masked.")
    print(f"{'':26}{'surgical':>10}{'+cache':>10}{'masked':>10}{'floor':>10}{'surg/m':>8}{'cache/m':>8}{'floor/m':>8}")
    for key, label in (("step_seconds", "step time, wall (s)"), ("step_cpu_seconds", "step time, CPU (s)"),
                       ("peak_extra_mib", "peak extra memory (MiB)"), ("trainable_elements", "trainable elements"),
                       ("optimizer_state_elements", "optimizer state elements")):
        ratios = [(v[key] / m[key]) if m[key] else float("nan") for v in (s, c, f)]
        fmt = "{:>10.3f}" * 4 if isinstance(s[key], float) else "{:>10}" * 4
        print(f"{label:26}" + fmt.format(s[key], c[key], m[key], f[key]) + "".join(f"{r:>8.3f}" for r in ratios))
    print(f"optimizer state == surgical parameter count: {s['optimizer_state_elements'] == 2 * s['trainable_elements']} "
          f"(AdamW keeps 2 moments per element: {s['optimizer_state_elements']} = 2 x {s['trainable_elements']})")
    saved, possible = m["step_seconds"] - s["step_seconds"], m["step_seconds"] - f["step_seconds"]
    print(f"per step the slices save {saved:.3f} s of the {possible:.3f} s any backprop method could save "
          f"(floor = no weight gradients at all, {f['step_seconds'] / m['step_seconds']:.2f}x masked); "
          f"skipping the frozen prefix takes a later-epoch step to {c['step_seconds'] / m['step_seconds']:.2f}x masked")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
