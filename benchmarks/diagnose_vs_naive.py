"""Streaming diagnosis versus the naive ``output_attentions=True`` way, on the default model.

    python benchmarks/diagnose_vs_naive.py [--prompts 8] [--tokens 512] [--batch-size 8] [--repeats 3]

Both variants reduce the same token windows (``--prompts`` windows of exactly ``--tokens``
tokens cut from the Debian ``python3.11-doc`` reStructuredText sources, or from the built-in
prompts repeated when those are not installed) to per-head BOS mass, entropy and local mass
(query 0 excluded):

* **streaming** — :func:`headsurgeon.diagnosis.collect.collect_head_stats`, which reduces each
  layer's maps inside the forward pass (validation of every map included);
* **naive** — ``model(..., output_attentions=True)`` on the same batches, then the metrics
  computed from the returned maps with plain tensor code written here (an independent check of
  the library's numbers).

Each variant runs in its own fresh Python process. After the model is loaded and a short
warm-up pass is done, the process resets its resident-set high-water mark
(``/proc/self/clear_refs``), runs the variant once, and reports wall time and
``VmHWM - VmRSS(before)``: the peak extra resident memory the variant needed. torch's CPU
allocations bypass ``tracemalloc``, so resident memory is what we measure. Where
``clear_refs`` is not writable the peak is ``ru_maxrss`` minus the high-water mark before the
run, which can only under-state the increase.
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

DOC_ROOT = Path("/usr/share/doc/python3.11/html/_sources")
VARIANTS = ("streaming", "naive")
METRICS = ("bos_mass", "entropy", "local_mass")


# ----- token windows ---------------------------------------------------------------------------
def token_windows(tokenizer, n: int, length: int) -> tuple[list[list[int]], str]:
    """``n`` windows of exactly ``length`` tokens and a label for where the text came from."""
    files = sorted(DOC_ROOT.rglob("*.rst.txt")) if DOC_ROOT.is_dir() else []
    windows: list[list[int]] = []
    for f in files:  # one window per file long enough, so the windows are different documents
        ids = tokenizer(f.read_text(encoding="utf-8", errors="replace"), add_special_tokens=False)["input_ids"]
        if len(ids) >= length:
            windows.append(list(ids[:length]))
        if len(windows) == n:
            return windows, f"python3.11-doc ({DOC_ROOT})"
    from headsurgeon.prompts import builtin_prompts

    text = "\n\n".join(p.text for p in builtin_prompts())
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = (ids * (length * (n + 1) // max(len(ids), 1) + 1))[: length * (n + 1)]
    return [ids[i * length + i : (i + 1) * length + i] for i in range(n)], "built-in prompts, repeated"


# ----- memory -------------------------------------------------------------------------------------
def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> tuple[int, str]:
    """Reset the resident high-water mark; return the baseline (KiB) and the method used."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return _status_kib("VmRSS"), "VmHWM after clear_refs"
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "ru_maxrss"


def _cpu_seconds() -> float:
    """User + system CPU time of this process: steadier than wall time when the cores are shared."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def read_peak(method: str) -> int:
    if method == "ru_maxrss":
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return _status_kib("VmHWM")


# ----- the two variants ---------------------------------------------------------------------------
def run_streaming(loaded, windows, batch_size):
    from headsurgeon.diagnosis.collect import collect_head_stats
    from headsurgeon.prompts import Prompt
    from headsurgeon.prompts.encoding import EncodedPrompt

    encoded = [EncodedPrompt(Prompt(f"window-{i}", "technical", ""), ids) for i, ids in enumerate(windows)]
    return collect_head_stats(loaded, encoded, batch_size=batch_size, progress=False)


def naive_metrics(att):
    """Per-head metrics of one layer's unpadded maps ``[B, H, T, T]``, query 0 left out."""
    import torch

    T = att.shape[-1]
    q = att[:, :, 1:, :]  # queries 1..T-1
    band = torch.ones(T, T, dtype=torch.bool).tril() & ~torch.ones(T, T, dtype=torch.bool).tril(-3)
    return {
        "bos_mass": q[..., 0].mean(-1),
        "entropy": (-torch.special.xlogy(q, q).sum(-1)).mean(-1),
        "local_mass": (att * band).sum(-1)[:, :, 1:].mean(-1),
    }


def run_naive(loaded, windows, batch_size):
    import numpy as np
    import torch

    model = loaded.model
    P, L, H = len(windows), loaded.adapter.num_layers, loaded.adapter.num_heads
    out = {m: np.full((P, L, H), np.nan) for m in METRICS}
    with torch.no_grad():
        for start in range(0, P, batch_size):
            ids = torch.tensor(windows[start : start + batch_size])
            res = model(input_ids=ids, attention_mask=torch.ones_like(ids), output_attentions=True, use_cache=False)
            for layer, att in enumerate(res.attentions):
                for m, v in naive_metrics(att.float()).items():
                    out[m][start : start + len(ids), layer] = v.numpy()
            del res
    return out


def worker(variant: str, ids_path: str, batch_size: int, result_path: str, threads: int | None) -> None:
    import gc

    import torch

    from headsurgeon.models import load_model

    if threads:
        torch.set_num_threads(threads)

    windows = json.loads(Path(ids_path).read_text())
    loaded = load_model(None)
    fn = run_streaming if variant == "streaming" else run_naive
    fn(loaded, [w[:16] for w in windows[:2]], batch_size)  # warm-up: lazy initialisation, thread pools
    gc.collect()
    base, method = reset_peak()
    cpu0, start = _cpu_seconds(), time.perf_counter()
    stats = fn(loaded, windows, batch_size)
    seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu0
    peak = read_peak(method)
    Path(result_path).write_text(json.dumps({
        "variant": variant,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "peak_increase_mib": (peak - base) / 1024,
        "baseline_rss_mib": base / 1024,
        "memory_method": method,
        "stats": {m: stats[m].tolist() for m in METRICS},
    }))


# ----- driver -------------------------------------------------------------------------------------
def spawn(variant: str, ids_path: str, batch_size: int, threads: int | None) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        result_path = fh.name
    try:
        cmd = [sys.executable, __file__, "--worker", variant, "--ids", ids_path, "--batch-size", str(batch_size), "--result", result_path]
        if threads:
            cmd += ["--threads", str(threads)]
        subprocess.run(cmd, check=True)
        return json.loads(Path(result_path).read_text())
    finally:
        os.unlink(result_path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=8, help="number of token windows")
    ap.add_argument("--tokens", type=int, default=512, help="tokens per window")
    ap.add_argument("--batch-size", type=int, default=8, help="windows per forward pass (8 = all at once)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per variant (alternating); median times and the largest peak are reported")
    ap.add_argument("--threads", type=int, default=None, help="torch threads per run (default: torch's own choice); 1 makes CPU time a clean measure of work on a busy machine")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    ap.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    ap.add_argument("--ids", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.ids, args.batch_size, args.result, args.threads)
        return

    import numpy as np
    import torch
    from transformers import AutoTokenizer

    from headsurgeon.models.loading import resolve_local_dir

    threads = args.threads or torch.get_num_threads()
    tokenizer = AutoTokenizer.from_pretrained(resolve_local_dir(None))
    windows, text_source = token_windows(tokenizer, args.prompts, args.tokens)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(windows, fh)
        ids_path = fh.name
    runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    load_before = os.getloadavg()[0]
    try:
        for r in range(args.repeats):
            order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]
            for v in order:
                print(f"run {r + 1}/{args.repeats}: {v} ...", file=sys.stderr, flush=True)
                runs[v].append(spawn(v, ids_path, args.batch_size, args.threads))
    finally:
        os.unlink(ids_path)

    load_after = os.getloadavg()[0]
    summary = {}
    for v in VARIANTS:
        summary[v] = {
            "seconds": statistics.median(r["seconds"] for r in runs[v]),
            "seconds_all": [round(r["seconds"], 2) for r in runs[v]],
            "cpu_seconds": statistics.median(r["cpu_seconds"] for r in runs[v]),
            "cpu_seconds_all": [round(r["cpu_seconds"], 2) for r in runs[v]],
            "peak_increase_mib": max(r["peak_increase_mib"] for r in runs[v]),
            "baseline_rss_mib": runs[v][0]["baseline_rss_mib"],
        }
    s, n = summary["streaming"], summary["naive"]
    time_ratio = s["seconds"] / n["seconds"]
    cpu_ratio = s["cpu_seconds"] / n["cpu_seconds"]
    mem_ratio = s["peak_increase_mib"] / n["peak_increase_mib"]
    diffs = {m: float(np.abs(np.array(runs["streaming"][0]["stats"][m]) - np.array(runs["naive"][0]["stats"][m])).max()) for m in METRICS}

    print(f"\nSmolLM2-135M-Instruct, {args.prompts} prompts x {args.tokens} tokens ({text_source}), batch size {args.batch_size}, "
          f"torch {torch.__version__}, {threads} torch thread(s) on {os.cpu_count()} cores, {args.repeats} run(s) per variant")
    print(f"machine load average {load_before:.1f} at start, {load_after:.1f} at end (other processes share the cores: wall times include waiting for them)")
    print(f"peak memory = extra resident memory during the run ({runs['streaming'][0]['memory_method']}), "
          f"model already loaded (~{s['baseline_rss_mib']:.0f} MiB resident)\n")
    print(f"| {'variant':<25} | {'wall time (s)':>13} | {'CPU time (s)':>12} | {'peak memory (MiB)':>17} |")
    print(f"|{'-' * 27}|{'-' * 15}|{'-' * 14}|{'-' * 19}|")
    for v in VARIANTS:
        label = "streaming (ours)" if v == "streaming" else "naive (output_attentions)"
        sv = summary[v]
        print(f"| {label:<25} | {sv['seconds']:>13.1f} | {sv['cpu_seconds']:>12.1f} | {sv['peak_increase_mib']:>17.0f} |")
    print(f"| {'ratio streaming/naive':<25} | {time_ratio:>13.2f} | {cpu_ratio:>12.2f} | {mem_ratio:>17.2f} |")
    print("\nmax |streaming - naive|: " + ", ".join(f"{m} {d:.1e}" for m, d in diffs.items()))
    print("wall times per run: " + "; ".join(f"{v} {summary[v]['seconds_all']}" for v in VARIANTS))
    print(f"targets: time ratio <= 1.00 (wall {'met' if time_ratio <= 1 else 'MISSED'}, CPU {'met' if cpu_ratio <= 1 else 'MISSED'}), "
          f"memory ratio <= 0.50 ({'met' if mem_ratio <= 0.5 else 'MISSED'})")
    if args.json:
        from headsurgeon.io import now_iso, write_json

        write_json(args.json, {
            "kind": "benchmark-diagnose-vs-naive",
            "created": now_iso(),
            "settings": {"prompts": args.prompts, "tokens": args.tokens, "batch_size": args.batch_size, "repeats": args.repeats, "text": text_source},
            "torch": torch.__version__,
            "threads": threads,
            "load_average": [load_before, load_after],
            "summary": summary,
            "ratios": {"wall_time": time_ratio, "cpu_time": cpu_ratio, "memory": mem_ratio},
            "max_abs_diff": diffs,
        })


if __name__ == "__main__":
    main()
