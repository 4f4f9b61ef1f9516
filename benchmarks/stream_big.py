"""Block-streamed diagnosis of a large checkpoint: peak resident memory, time, extrapolation.

Runs ``headsurgeon.diagnose(folder, stream=True)`` once in this process on a small prompt set
and reports the process's peak resident set size (``ru_maxrss``, which counts every page the
process ever had resident: the Python runtime, the block, the mapped shard while it is read,
the activations), the wall time split into reading and computing, and what the same run
would cost on a bigger model of the same family (BLOOM-176B by default): memory from the
largest block, reading time from the measured read rate, compute from the measured seconds per
parameter and token.

    nice -n 10 .venv/bin/python benchmarks/write_random_bloom.py /tmp/bloom-7b1-random
    nice -n 10 .venv/bin/python benchmarks/stream_big.py /tmp/bloom-7b1-random --json out/stream_bloom7b1.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

#: bigscience/bloom's config (176B): the fields that shape the weights.
BLOOM_176B = dict(hidden=14336, layers=70, heads=112, vocab=250880)


def bloom_block_params(hidden: int) -> int:
    """Parameters of one BLOOM block: fused QKV (3h x h + 3h), dense (h x h + h), MLP (4h x h + 4h,
    h x 4h + h), two LayerNorms (2 x 2h)."""
    return 3 * hidden * hidden + 3 * hidden + hidden * hidden + hidden + 8 * hidden * hidden + 5 * hidden + 4 * hidden


def extrapolate(result: dict, target: dict = BLOOM_176B) -> dict:
    """What the measured run would cost on ``target`` (same prompts, same machine, fp32 blocks).

    Memory: the measured peak, minus this model's resident block (its fp32 copy plus its bf16
    shard mapped while read: 1.5 x ``block_bytes_max``) and held activations, plus the target's
    block and activations scaled by the width ratio. Reading: the target's bf16 checkpoint at the
    measured read rate. Computing: the measured seconds per (block parameter x token) times the
    target's block parameters x tokens (attention's T x T part is small at these lengths).
    """
    cost, cfg, tokens = result["streaming"], result["model"], result["tokens"]
    block = bloom_block_params(cfg["hidden_size"])
    big_block = bloom_block_params(target["hidden"])
    width = target["hidden"] / cfg["hidden_size"]
    checkpoint = (big_block * target["layers"] + target["vocab"] * target["hidden"]) * 2
    per_param_token = cost["seconds_computing"] / (block * cfg["num_layers"] * tokens)
    peak = (result["peak_rss_bytes"] - 1.5 * cost["block_bytes_max"] - cost["activation_bytes_peak"]
            + 1.5 * big_block * 4 + width * cost["activation_bytes_peak"])
    return {
        "block_params": big_block,
        "checkpoint_bytes_bf16": checkpoint,
        "peak_rss_bytes": int(peak),
        "reading_seconds": round(checkpoint / result["read_rate_bytes_per_s"], 1),
        "computing_seconds": round(per_param_token * big_block * target["layers"] * tokens, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, nargs="?")
    ap.add_argument("--prompts", type=int, default=4, help="built-in prompts to use (default 4)")
    ap.add_argument("--max-length", type=int, default=64, help="tokens per prompt (default 64)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--from-json", type=Path, default=None, help="recompute the extrapolation of a saved result, run nothing")
    args = ap.parse_args()
    if args.from_json is not None:
        result = json.loads(args.from_json.read_text())
        result["extrapolated_bloom_176b"] = extrapolate(result)
        print(json.dumps(result["extrapolated_bloom_176b"], indent=1))
        return

    start = time.perf_counter()
    import torch

    from headsurgeon import diagnose
    from headsurgeon.prompts import builtin_prompts

    torch.set_num_threads(2)
    rss_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    cpu_start = time.process_time()
    diag = diagnose(args.folder, prompts=builtin_prompts()[: args.prompts], max_length=args.max_length,
                    batch_size=args.batch_size, stream=True, progress=False)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    cost = diag.settings["streaming"]
    result = {
        "folder": str(args.folder),
        "model": diag.model,
        "prompts": len(diag.prompts),
        "tokens": sum(p["tokens"] for p in diag.prompts),
        "peak_rss_bytes": peak,
        "rss_after_imports_bytes": rss_imports,
        "wall_seconds": round(wall, 1),
        "diagnosis_seconds": round(diag.elapsed_seconds, 1),
        "diagnosis_cpu_seconds": round(time.process_time() - cpu_start, 1),
        "streaming": cost,
        "read_rate_bytes_per_s": round(cost["weight_bytes_read"] / max(cost["seconds_reading"], 1e-9)),
        "classes": diag.counts(),
        "load_average": list(os.getloadavg()),
    }
    result["extrapolated_bloom_176b"] = extrapolate(result)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)


if __name__ == "__main__":
    main()
