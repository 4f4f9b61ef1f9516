"""The measurement engine against a plain SDPA forward and the old eager capture, on SmolLM2.

    python benchmarks/diagnose_engine.py [--prompts 8] [--tokens 512] [--repeats 3] [--threads 1] [--bf16] [--variants V,..] [--warm-up V] [--allocator-trace] [--json F]
    python benchmarks/diagnose_engine.py --long [--long-tokens 8192] [--long-prompts 2] [--json F]

Short mode: the same ``--prompts`` windows of exactly ``--tokens`` tokens (Debian
``python3.11-doc`` sources; see ``diagnose_vs_naive.py``), one batch, each variant in its own
fresh process, variants alternating over ``--repeats`` rounds:

* **engine** — :func:`headsurgeon.diagnosis.collect.collect_head_stats` (statistics inside each
  attention call, validated, spot-checked);
* **sdpa** — the same forward call (``use_cache=False``, last position's logits only) with
  transformers' SDPA attention and nothing measured: the floor the engine is held to;
* **eager** — the old path: transformers' eager attention, every layer's maps hooked, checked and
  reduced (``capture.stream_attention`` + ``diagnosis.metrics.head_stats``), now the reference;
* with ``--bf16`` also **engine-bf16** and **sdpa-bf16** (the model cast to bfloat16).

Every variant runs, in each round, in two fresh processes that differ only in glibc's malloc:

* **default** — glibc as it comes. Wall and CPU time are measured here, and peak extra resident
  memory (``VmHWM`` after ``clear_refs`` minus ``VmRSS`` before the run). With glibc's dynamic mmap
  threshold every tensor up to 32 MiB lives on the ``brk`` heap, whose free middle is never given
  back, so this peak depends on how earlier allocations of the process fragmented the heap: the
  same SDPA forward peaked at 142, 214 and 142 MiB in three identical processes (2026-12-01).
* **pinned** — the same with ``MALLOC_MMAP_THRESHOLD_=131072`` (glibc's own initial threshold,
  its dynamic raising switched off): every tensor of 128 KiB or more is mmapped and returned on
  free, so the peak resident memory follows what is live. This is the memory figure compared.

Before the baseline the worker reads every parameter and buffer once, so model weights that
``from_pretrained`` left memory-mapped are resident in every variant (the engine's warm-up stops
before the tied LM head, and the measured run would otherwise count ~28 MiB of embedding pages
first touched by the embedding lookup as extra memory).

``--allocator-trace`` adds, per variant, one run under ``torch.profiler`` (``profile_memory``):
the peak of live bytes over every allocation and free torch made during the run, independent of
glibc.

Printed: median wall and CPU time, median peak extra resident memory in both modes, the ratios
to ``sdpa``, and the largest difference of each statistic from the eager reference (and of
bf16 from fp32).

Long mode runs the CLI, ``python -m headsurgeon diagnose --max-length N``, on a prompt file of
``--long-prompts`` texts of at least N tokens, twice: at ``--max-length N`` and at
``--max-length 16`` (same prompts, so loading and start-up are the same); the difference of the
two processes' peak resident memory is the extra memory of diagnosing at N tokens. Beside it, what
the naive ``output_attentions=True`` way and the old eager capture would need (computed from the
shapes, not run).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from diagnose_vs_naive import DOC_ROOT, _cpu_seconds, read_peak, reset_peak, token_windows  # noqa: E402

METRICS = ("bos_mass", "entropy", "local_mass")
VARIANTS = ("engine", "sdpa", "eager")
BF16 = ("engine-bf16", "sdpa-bf16")


# ----- variants ---------------------------------------------------------------------------------
def _encoded(windows):
    from headsurgeon.prompts import Prompt
    from headsurgeon.prompts.encoding import EncodedPrompt

    return [EncodedPrompt(Prompt(f"window-{i}", "technical", ""), ids) for i, ids in enumerate(windows)]


def run_engine(loaded, windows):
    from headsurgeon.diagnosis.collect import collect_head_stats

    return collect_head_stats(loaded, _encoded(windows), batch_size=len(windows), progress=False)


def run_sdpa(loaded, windows):
    import torch

    ids = torch.tensor(windows)
    with torch.no_grad(), loaded.adapter.training_attention():  # transformers' SDPA, nothing measured
        loaded.model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False, logits_to_keep=1)
    return None


def run_eager(loaded, windows):
    import numpy as np
    import torch

    from headsurgeon.capture import stream_attention
    from headsurgeon.diagnosis.metrics import head_stats

    P, L, H = len(windows), loaded.adapter.num_layers, loaded.adapter.num_heads
    out = {m: np.full((P, L, H), np.nan) for m in METRICS}
    ids = torch.tensor(windows)

    def on_layer(att):
        s = head_stats(att)
        for m in METRICS:
            out[m][:, att.layer] = getattr(s, m).numpy()

    with torch.no_grad(), stream_attention(loaded.adapter, torch.full((P,), ids.shape[1]), on_layer):
        loaded.model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False, logits_to_keep=1)
    return out


RUNNERS = {"engine": run_engine, "sdpa": run_sdpa, "eager": run_eager, "engine-bf16": run_engine, "sdpa-bf16": run_sdpa}


#: glibc malloc per worker mode: ``pinned`` switches off the dynamic mmap threshold (see above).
MODES = {"default": {}, "pinned": {"MALLOC_MMAP_THRESHOLD_": "131072"}, "trace": {}}


def touch_weights(model) -> None:
    """Read every parameter and buffer once, so memory-mapped weights are resident before the baseline."""
    import itertools

    import torch

    with torch.no_grad():
        for t in itertools.chain(model.parameters(), model.buffers()):
            t.float().sum()


def allocator_peak_mib(fn) -> float:
    """Run ``fn`` under ``torch.profiler`` and return the peak of live bytes (MiB) over the
    allocations and frees torch recorded, in time order (glibc's heap layout plays no part)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    live = peak = 0
    for _, n in events:
        live += n
        peak = max(peak, live)
    return peak / 2**20


def worker(variant: str, ids_path: str, result_path: str, threads: int | None, mode: str, warm_up: str | None = None) -> None:
    import gc

    import torch

    from headsurgeon.models import load_model

    if threads:
        torch.set_num_threads(threads)
    windows = json.loads(Path(ids_path).read_text())
    loaded = load_model(None, progress=False, dtype="bf16" if variant.endswith("bf16") else "fp32")
    fn = RUNNERS[variant]
    RUNNERS[warm_up or variant](loaded, [w[:16] for w in windows[:2]])  # warm-up (by default the variant itself)
    touch_weights(loaded.model)
    gc.collect()
    if mode == "trace":
        peak = allocator_peak_mib(lambda: fn(loaded, windows))
        Path(result_path).write_text(json.dumps({"variant": variant, "mode": mode, "allocator_peak_mib": peak}))
        return
    base, method = reset_peak()
    cpu0, start = _cpu_seconds(), time.perf_counter()
    stats = fn(loaded, windows)
    seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu0
    peak = read_peak(method)
    Path(result_path).write_text(json.dumps({
        "variant": variant, "mode": mode, "seconds": seconds, "cpu_seconds": cpu, "peak_increase_mib": (peak - base) / 1024,
        "memory_method": method, "stats": None if stats is None else {m: stats[m].tolist() for m in METRICS},
    }))


def spawn(variant: str, ids_path: str, threads: int | None, mode: str = "default", warm_up: str | None = None) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        result_path = fh.name
    try:
        cmd = [sys.executable, __file__, "--worker", variant, "--ids", ids_path, "--result", result_path, "--mode", mode]
        if threads:
            cmd += ["--threads", str(threads)]
        if warm_up:
            cmd += ["--warm-up", warm_up]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | MODES[mode]
        subprocess.run(cmd, check=True, env=env)
        return json.loads(Path(result_path).read_text())
    finally:
        os.unlink(result_path)


def short_mode(args) -> dict:
    import numpy as np
    import torch
    from transformers import AutoTokenizer

    from headsurgeon.models.loading import resolve_local_dir

    tokenizer = AutoTokenizer.from_pretrained(resolve_local_dir(None))
    windows, source = token_windows(tokenizer, args.prompts, args.tokens)
    variants = tuple(args.variants.split(",")) if args.variants else VARIANTS + (BF16 if args.bf16 else ())
    unknown = [v for v in variants if v not in RUNNERS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; choose from {', '.join(RUNNERS)}")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(windows, fh)
        ids_path = fh.name
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    pinned: dict[str, list[dict]] = {v: [] for v in variants}
    traced: dict[str, float] = {}
    load = [os.getloadavg()[0]]
    try:
        for r in range(args.repeats):
            for v in (variants if r % 2 == 0 else variants[::-1]):
                print(f"round {r + 1}/{args.repeats}: {v} ...", file=sys.stderr, flush=True)
                runs[v].append(spawn(v, ids_path, args.threads, "default", args.warm_up))
                pinned[v].append(spawn(v, ids_path, args.threads, "pinned", args.warm_up))
        if args.allocator_trace:
            for v in variants:
                print(f"allocator trace: {v} ...", file=sys.stderr, flush=True)
                traced[v] = spawn(v, ids_path, args.threads, "trace", args.warm_up)["allocator_peak_mib"]
    finally:
        os.unlink(ids_path)
    load.append(os.getloadavg()[0])
    summary = {v: {
        "seconds": statistics.median(x["seconds"] for x in runs[v]),
        "cpu_seconds": statistics.median(x["cpu_seconds"] for x in runs[v]),
        "cpu_seconds_all": [round(x["cpu_seconds"], 2) for x in runs[v]],
        "peak_increase_mib": statistics.median(x["peak_increase_mib"] for x in runs[v]),
        "peak_increase_mib_all": [round(x["peak_increase_mib"], 1) for x in runs[v]],
        "pinned_peak_increase_mib": statistics.median(x["peak_increase_mib"] for x in pinned[v]),
        "pinned_peak_increase_mib_all": [round(x["peak_increase_mib"], 2) for x in pinned[v]],
        "pinned_cpu_seconds_all": [round(x["cpu_seconds"], 2) for x in pinned[v]],
        "allocator_peak_mib": traced.get(v),
    } for v in variants}

    def diff(a, b):
        return {m: float(np.abs(np.array(runs[a][0]["stats"][m]) - np.array(runs[b][0]["stats"][m])).max()) for m in METRICS}

    diffs = {}
    if "engine" in variants and "eager" in variants:
        diffs["engine_vs_eager"] = diff("engine", "eager")
    if "engine" in variants and "engine-bf16" in variants:
        diffs["bf16_vs_fp32"] = diff("engine-bf16", "engine")
    threads = args.threads or torch.get_num_threads()
    print(f"\nSmolLM2-135M-Instruct, {args.prompts} x {args.tokens} tokens ({source}), one batch, torch {torch.__version__}, "
          f"{threads} torch thread(s) on {os.cpu_count()} cores, {args.repeats} run(s) per variant, load average {load[0]:.1f} -> {load[1]:.1f}")
    print(f"| {'variant':<12} | {'wall (s)':>8} | {'CPU (s)':>8} | {'CPU / sdpa':>10} | {'peak, pinned malloc (MiB)':>25} | {'/ sdpa':>6} "
          f"| {'peak, default malloc (MiB)':>26} | {'/ sdpa':>6} |")
    for v in variants:
        floor = summary.get("sdpa-bf16" if v.endswith("bf16") else "sdpa", summary[v])
        s = summary[v]
        print(f"| {v:<12} | {s['seconds']:>8.1f} | {s['cpu_seconds']:>8.1f} | {s['cpu_seconds'] / floor['cpu_seconds']:>10.3f} | "
              f"{s['pinned_peak_increase_mib']:>25.1f} | {s['pinned_peak_increase_mib'] / max(floor['pinned_peak_increase_mib'], 1e-9):>6.3f} | "
              f"{s['peak_increase_mib']:>26.0f} | {s['peak_increase_mib'] / max(floor['peak_increase_mib'], 1e-9):>6.2f} |")
    print("CPU seconds per run: " + "; ".join(f"{v} {summary[v]['cpu_seconds_all']}" for v in variants))
    print("peak MiB per run, pinned malloc: " + "; ".join(f"{v} {summary[v]['pinned_peak_increase_mib_all']}" for v in variants))
    print("CPU seconds per run, pinned malloc: " + "; ".join(f"{v} {summary[v]['pinned_cpu_seconds_all']}" for v in variants))
    print("peak MiB per run, default malloc: " + "; ".join(f"{v} {summary[v]['peak_increase_mib_all']}" for v in variants))
    if traced:
        print("allocator peak of live tensors (torch.profiler): " + "; ".join(f"{v} {traced[v]:.2f} MiB" for v in variants))
    for k, d in diffs.items():
        print(f"max |difference| {k}: " + ", ".join(f"{m} {x:.1e}" for m, x in d.items()))
    return {"mode": "short", "settings": vars(args), "text": source, "threads": threads, "load_average": load,
            "summary": summary, "max_abs_diff": diffs}


# ----- long mode --------------------------------------------------------------------------------
def long_prompt_file(tokenizer, n: int, tokens: int) -> Path:
    """``n`` blank-line-free texts of at least ``tokens`` tokens (whole documentation files joined)."""
    files = sorted(DOC_ROOT.rglob("*.rst.txt"))
    texts, current, count = [], [], 0
    for f in files:
        text = f.read_text(encoding="utf-8", errors="replace")
        current.append(text)
        count += len(tokenizer(text, add_special_tokens=False)["input_ids"])
        if count > tokens + 64:
            texts.append(" ".join(" ".join(current).split()))  # no blank lines: one prompt per text
            current, count = [], 0
            if len(texts) == n:
                break
    if len(texts) < n:
        raise SystemExit(f"not enough text under {DOC_ROOT} for {n} prompts of {tokens} tokens")
    fh = tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False)
    fh.write("\n\n".join(texts))
    fh.close()
    return Path(fh.name)


def run_cli(prompt_file: Path, max_length: int, out: Path) -> dict:
    cmd = [sys.executable, "-m", "headsurgeon", "diagnose", "--prompts", str(prompt_file), "--max-length", str(max_length),
           "--batch-size", "1", "--no-progress", "-o", str(out)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({status})")
    del before
    diag = json.loads((out / "diagnosis.json").read_text())
    return {"max_length": max_length, "seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "peak_rss_mib": usage.ru_maxrss / 1024, "tokens": [p["tokens"] for p in diag["prompts"]],
            "elapsed_seconds": diag.get("elapsed_seconds")}


def long_mode(args) -> dict:
    from transformers import AutoConfig, AutoTokenizer

    from headsurgeon.models.loading import resolve_local_dir

    folder = resolve_local_dir(None)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    cfg = AutoConfig.from_pretrained(folder)
    prompts = long_prompt_file(tokenizer, args.long_prompts, args.long_tokens)
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        short = run_cli(prompts, 16, Path(tmp) / "short")
        long = run_cli(prompts, args.long_tokens, Path(tmp) / "long")
    load.append(os.getloadavg()[0])
    os.unlink(prompts)
    T, L, H = max(long["tokens"]), cfg.num_hidden_layers, cfg.num_attention_heads
    gib = 1024**3
    naive = L * H * T * T * 4 / gib  # output_attentions=True keeps every layer's fp32 map of one sequence
    eager_layer = H * T * T * 4 / gib  # the old capture: one layer's map at a time (plus softmax temporaries)
    extra = (long["peak_rss_mib"] - short["peak_rss_mib"]) / 1024
    print(f"\nheadsurgeon diagnose --max-length {args.long_tokens} on {args.long_prompts} prompt(s) of {long['tokens']} tokens "
          f"(batch 1), load average {load[0]:.1f} -> {load[1]:.1f}")
    print(f"  wall {long['seconds']:.0f} s, CPU {long['cpu_seconds']:.0f} s (the run at 16 tokens: wall {short['seconds']:.0f} s, CPU {short['cpu_seconds']:.0f} s)")
    print(f"  peak resident {long['peak_rss_mib']:.0f} MiB vs {short['peak_rss_mib']:.0f} MiB at 16 tokens: extra {extra:.2f} GiB")
    print(f"  naive output_attentions=True would hold {naive:.1f} GiB of maps per sequence; the old eager capture {eager_layer:.2f} GiB per layer map (x2-3 in softmax temporaries)")
    return {"mode": "long", "settings": vars(args), "load_average": load, "short": short, "long": long,
            "extra_gib": extra, "naive_maps_gib": naive, "eager_layer_map_gib": eager_layer}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per worker (1: CPU time measures work, not spinning)")
    ap.add_argument("--bf16", action="store_true", help="also run the engine and SDPA in bfloat16")
    ap.add_argument("--warm-up", default=None, choices=sorted(RUNNERS),
                    help="warm every worker up with this variant (default: each with itself); shows how what ran before moves the default-malloc peak")
    ap.add_argument("--allocator-trace", action="store_true", help="also one run per variant under torch.profiler: peak of live tensor bytes")
    ap.add_argument("--variants", default=None, help=f"comma-separated subset of {', '.join(RUNNERS)} (default: engine,sdpa,eager [+ bf16 pair])")
    ap.add_argument("--long", action="store_true", help="run the long-context CLI measurement instead")
    ap.add_argument("--long-tokens", type=int, default=8192)
    ap.add_argument("--long-prompts", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--ids", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="default", choices=sorted(MODES), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.ids, args.result, args.threads, args.mode, args.warm_up)
        return
    result = long_mode(args) if args.long else short_mode(args)
    if args.json:
        from headsurgeon.io import now_iso, write_json

        settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in result.pop("settings").items()}
        write_json(args.json, {"kind": "benchmark-diagnose-engine", "created": now_iso(), "settings": settings, **result})


if __name__ == "__main__":
    main()
