"""The lab's outcome as text: the closing note of ``headsurgeon lab run`` / ``analyze``."""

from __future__ import annotations


def _fmt(stats: dict | None, pattern: str = "{:.2f}") -> str:
    if not stats:
        return "-"
    if stats["n"] == 1 or stats["min"] == stats["max"]:
        return pattern.format(stats["mean"])
    return f"{pattern.format(stats['mean'])} [{pattern.format(stats['min'])}, {pattern.format(stats['max'])}]"


def _rho(x) -> str:
    return "n/a" if x is None else f"{x:+.2f}"


def summary_lines(doc: dict) -> list[str]:
    """Per encoding: collapsed fraction at each checkpoint, held-out PPL start -> end, and the
    slope relation at step 0 and at the end (mean [min, max] over seeds)."""
    lines = []
    for enc, e in doc["encodings"].items():
        s = e["series"]
        lines.append(f"{enc}: {len(e['runs'])} runs ({e['finished']} finished)")
        lines.append("  collapsed fraction by step: " + "  ".join(
            f"{step}:{_fmt(v)}" for step, v in zip(e["steps"], s["collapsed_fraction"])))
        lines.append(f"  held-out PPL: step 0 {_fmt(s['heldout_ppl'][0], '{:.0f}')} -> step {e['steps'][-1]} {_fmt(s['heldout_ppl'][-1], '{:.1f}')}")
        start, end = e["start"].get("pooled"), e["end"].get("pooled")
        if start and end:
            label = "slope vs BOS rho" if enc == "alibi" else "null control rho (index slopes)"
            lines.append(f"  {label} (pooled over seeds): step 0 {_rho(start['rho_all_heads'])} -> step {e['end']['step']} "
                         f"{_rho(end['rho_all_heads'])}; change since step 0 vs slope {_rho(end['rho_change_all_heads'])}")
            lines.append("    per layer at the end: " + " ".join(_rho(x) for x in end["rho_per_layer"]))
        if enc == "alibi":
            lines.append("  collapsed heads by head index at the end (layers x seeds): " + " ".join(
                f"H{h}:{n}" for h, n in enumerate(e["end"]["collapsed_by_head_index"])))
    return lines
