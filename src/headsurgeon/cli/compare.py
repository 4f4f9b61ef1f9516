"""``headsurgeon compare``: per-head drift between diagnoses or over a surgery run
(calls :func:`headsurgeon.evaluation.compare`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import dpi_option, emit_json, format_option, json_option, quiet_for_json
from .display import console


def print_comparison(c) -> None:
    """Zone table, recoveries, iatrogenic collapses, trajectory (if any) and the column table."""
    from rich.table import Table

    from headsurgeon.evaluation.drift import ZONE_LABELS

    console.print(f"[bold]{c.labels[-1]}[/bold] against [bold]{c.labels[0]}[/bold] ({len(c.labels)} diagnoses; "
                  f"zone: {c.zone_source or 'none (every head counts as outside)'}); drifting = |delta BOS mass| > {c.threshold:g}")
    for n in c.notes:
        console.print(f"[yellow]note:[/yellow] {n}")
    t = Table(title="Drift per zone")
    for col in ("zone", "heads", "drifting", "mean |delta|", "mean delta", "max |delta|"):
        t.add_column(col, justify="left" if col == "zone" else "right")
    for z, v in c.zones().items():
        t.add_row(ZONE_LABELS[z], str(v["heads"]), str(v["drifting"]), f"{v['mean_abs_delta']:.4f}", f"{v['mean_delta']:+.4f}", f"{v['max_abs_delta']:.4f}")
    console.print(t)
    rec, iat = c.transitions()
    for title, rows in (("recoveries (collapsed -> not collapsed)", rec), ("iatrogenic collapses (not collapsed -> collapsed)", iat)):
        small = sum(not r["drifting"] for r in rows)
        console.print(f"[bold]{title}[/bold]: {len(rows)}" + (f", {small} borderline (moved less than {c.threshold:g})" if small else ""))
        for z in ("targets", "frozen_in_zone", "outside_zone"):
            mine = [r for r in rows if r["zone"] == z]
            if mine:
                listed = ", ".join(f"{r['head']} {r['bos_before']:.2f}->{r['bos_after']:.2f}{'' if r['drifting'] else ' (borderline)'}" for r in mine)
                console.print(f"  {ZONE_LABELS[z]} ({len(mine)}): {listed}")
    if len(c.labels) > 2:
        t = Table(title="Drift over the inputs (drifting heads / mean |delta| per zone)")
        t.add_column("input")
        zs = [z for z in ("outside_zone", "frozen_in_zone", "targets") if c.masks[z].any()]
        for z in zs:
            t.add_column(ZONE_LABELS[z], justify="right")
        t.add_column("recov.", justify="right")
        t.add_column("iatro.", justify="right")
        for r in c.trajectory():
            t.add_row(r["label"], *[f"{r['zones'][z]['drifting']} / {r['zones'][z]['mean_abs_delta']:.4f}" for z in zs],
                      str(r["recoveries"]), str(r["iatrogenic"]))
        console.print(t)
        for z, ph in c.phenomena().items():
            if ph["half_peak_at"] is not None:
                console.print(f"{ZONE_LABELS[z]}: mean |delta| reaches half its peak ({ph['peak_mean_abs_delta']:.4f}) at {ph['half_peak_at']}")
    labels = c.labels[1:]
    show = list(range(len(labels))) if len(labels) <= 4 else [0, len(labels) // 2, len(labels) - 1]
    t = Table(title="Column drift (mean |delta| per head index across layers, targets excluded)")
    t.add_column("column")
    t.add_column("frozen heads", justify="right")
    for k in show:
        t.add_column(labels[k], justify="right")
    t.add_column("drifting (last)", justify="right")
    t.add_column("change", justify="right")
    for r in c.columns():
        t.add_row(f"H{r['index']}", str(r["heads"]), *["-" if r["mean_abs_delta"][k] is None else f"{r['mean_abs_delta'][k]:.4f}" for k in show],
                  str(r["drifting"][-1]), "-" if r["change"] is None else f"{r['change']:+.4f}")
    console.print(t)


def register(app: typer.Typer) -> None:
    @app.command("compare")
    def compare_cmd(
        inputs: list[Path] = typer.Argument(..., help="Diagnosis JSON files and/or surgery run folders; the first is the reference. "
                                                      "A run folder alone gives its stock diagnosis and every evaluation."),
        out: Path = typer.Option(Path("out/compare"), "--out", "-o", help="Folder for comparison.json and the figures."),
        zone: Optional[Path] = typer.Option(None, "--zone", help="Plan file whose targets / frozen_in_zone define the zones (default: the run's plan)."),
        drift_threshold: float = typer.Option(0.05, help="A head drifts when |delta BOS mass| is above this."),
        label: Optional[list[str]] = typer.Option(None, "--label", help="Name for each diagnosis, in order (repeat the option)."),
        allow_different_models: bool = typer.Option(False, "--allow-different-models", help="Compare diagnoses of models of different families or shapes anyway."),
        fmt: str = format_option(),
        dpi: Optional[int] = dpi_option(),
        as_json: bool = json_option(),
    ) -> None:
        """Per-head BOS-mass change by zone, recoveries, iatrogenic collapses and column drift; writes JSON and figures."""
        from headsurgeon.evaluation import compare
        from headsurgeon.evaluation.outputs import write_comparison

        quiet_for_json(as_json)
        c = compare(inputs, zone=zone, drift_threshold=drift_threshold, labels=label or None, allow_different_models=allow_different_models)
        from headsurgeon.figure_files import figure_format

        with figure_format(fmt, dpi):
            paths = write_comparison(c, out)
        if as_json:
            emit_json(c.to_dict())
            return
        print_comparison(c)
        typer.echo("wrote " + ", ".join(str(p) for p in paths))
