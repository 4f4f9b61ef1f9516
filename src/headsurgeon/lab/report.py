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


def markdown_lines(doc: dict) -> list[str]:
    """The outcome as Markdown tables (for a README): collapse and perplexity over checkpoints,
    and the slope relation at step 0 and at the end, per encoding (mean [min, max] over seeds)."""
    encs = doc["encodings"]
    steps = max((e["steps"] for e in encs.values()), key=len)
    out = ["| encoding | seeds | " + " | ".join(f"step {s}" for s in steps) + " |", "|---|---|" + "---|" * len(steps)]
    for enc, e in encs.items():
        vals = dict(zip(e["steps"], e["series"]["collapsed_fraction"]))
        out.append(f"| {enc} | {len(e['runs'])} | " + " | ".join(_fmt(vals.get(s), "{:.3f}") for s in steps) + " |")
    out += ["", "| encoding | end step | held-out PPL step 0 | held-out PPL end | other PPL end | mean BOS mass step 0 | mean BOS mass end |",
            "|---|---|---|---|---|---|---|"]
    for enc, e in encs.items():
        a, b = e["start"], e["end"]
        out.append(f"| {enc} | {b['step']} | {_fmt(a['heldout_ppl'], '{:.0f}')} | {_fmt(b['heldout_ppl'], '{:.1f}')} | {_fmt(b['other_ppl'], '{:.1f}')} "
                   f"| {_fmt(a['mean_bos_mass'], '{:.3f}')} | {_fmt(b['mean_bos_mass'], '{:.3f}')} |")
    out += ["", "| encoding | rho step 0 | rho end | rho per layer, end | rho of change since step 0, end | per layer |", "|---|---|---|---|---|---|"]
    for enc, e in encs.items():
        a, b = e["start"].get("pooled"), e["end"].get("pooled")
        if a and b:
            out.append(f"| {enc}{'' if enc == 'alibi' else ' (null)'} | {_rho(a['rho_all_heads'])} | {_rho(b['rho_all_heads'])} | "
                       f"{' '.join(_rho(x) for x in b['rho_per_layer'])} | {_rho(b['rho_change_all_heads'])} | "
                       f"{' '.join(_rho(x) for x in b['rho_change_per_layer'])} |")
    return out
