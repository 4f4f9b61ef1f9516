"""Terminal tables (rich) shared by the subcommands."""

from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.table import Table

console = Console()


def print_diagnosis(diag) -> None:
    from headsurgeon.diagnosis import LABELS

    s = diag.summary()
    m = diag.model
    firsts = Counter(p["first_token"] for p in diag.prompts)
    shown = firsts.most_common(4)
    rest = len(diag.prompts) - sum(n for _, n in shown)
    q0 = "included" if diag.settings["include_first_query"] else "excluded"
    lengths = [p["tokens"] for p in diag.prompts]
    console.print(
        f"[bold]{m['name']}[/bold] ({m['family']}, {m['num_layers']} layers x {m['num_heads']} heads, "
        f"{m['num_kv_heads']} KV heads) over {len(diag.prompts)} prompts of {min(lengths)}-{max(lengths)} tokens; query 0 {q0}; "
        f"--bos {diag.settings['bos']}; first token of the {len(diag.prompts)} prompts: "
        + ", ".join(f"{t!r} x{n}" for t, n in shown) + (f", {rest} other prompts" if rest else ""),
        highlight=False,
    )
    for n in diag.notes():
        console.print(f"[yellow]warning:[/yellow] {n}")
    t = Table(title="Head classes", show_lines=False)
    t.add_column("sink threshold")
    for c in LABELS.values():
        t.add_column(c, justify="right")
    rows = {float(thr): counts for thr, counts in diag.threshold_sweep().items()}
    used = diag.thresholds.sink
    if not any(abs(thr - used) < 1e-9 for thr in rows):  # e.g. --sink-threshold 0.45: show its counts too
        rows[used] = diag.counts()
    for thr in sorted(rows):
        marker = " (used)" if abs(thr - used) < 1e-9 else ""
        t.add_row(f"> {thr:.2f}{marker}" if round(thr, 2) == thr else f"> {thr:g}{marker}", *[str(rows[thr][k]) for k in LABELS])
    console.print(t)
    cols = diag.columns()
    band = cols["sick_band"]
    console.print(
        f"collapsed: {s['collapsed_percent']}% of {s['heads']} heads · per head index (layers collapsed of {m['num_layers']}): "
        + " ".join(f"H{h}:{n}" for h, n in enumerate(cols["collapsed_layers"])),
        highlight=False,
    )
    console.print((f"sick band: H{band[0]}-H{band[-1]}" if band == list(range(band[0], band[-1] + 1)) and len(band) > 1
                   else f"sick band: {', '.join(f'H{h}' for h in band)}") if band else "no sick band",
                  f"({cols['band_rule']})", highlight=False)
    top = diag.most_collapsed(5)
    if top:
        console.print("most collapsed heads (BOS mass): " + ", ".join(f"{h} {b:.3f}" for h, b in top), highlight=False)
    console.print(f"spread across prompts (std of BOS mass): mean {s['mean_prompt_spread']:.3f}, max {s['max_prompt_spread']:.3f}")
    if diag.alibi:
        console.print(f"ALiBi: {diag.alibi['reading']}")
    for kind, row in (s.get("by_layer_type") or {}).items():
        window = f", window {row['window']}" if row["window"] else ""
        console.print(f"{kind} layers ({len(row['layers'])}{window}): mean BOS mass {row['mean_bos_mass']:.3f} over "
                      f"{row['bos_rows']} query rows that can see position 0; {row['collapsed_heads']} collapsed heads")
    if "sink_mass" in s:
        console.print(f"learned sinks: mean sink mass {s['sink_mass']['mean']:.3f} (max {s['sink_mass']['max']:.3f}); "
                      "BOS mass counts real keys only")
    for note in s.get("family_decisions", []):
        console.print(f"family: {note}")
    for warning in s.get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {warning}")
