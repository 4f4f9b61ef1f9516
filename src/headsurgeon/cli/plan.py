"""``headsurgeon plan``: make a surgery plan from a diagnosis (calls :func:`headsurgeon.surgery.make_plan`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import emit_json, json_option, quiet_for_json
from .display import console


def register(app: typer.Typer) -> None:
    @app.command("plan")
    def plan_cmd(
        diagnosis: Path = typer.Argument(..., help="diagnosis.json from `headsurgeon diagnose`, or a surgery run folder (uses its best model's last diagnosis)."),
        out: Path = typer.Option(Path("out/plan.json"), "--out", "-o", help="Plan file to write (.json or .yaml), or a folder to write plan.json in."),
        classes: Optional[str] = typer.Option(None, "--class", help="Comma-separated classes to target: bos_sink,dead (low_entropy, healthy also accepted)."),
        layers: Optional[str] = typer.Option(None, help="Layer range, e.g. 5-22 (restricts every rule)."),
        band: Optional[str] = typer.Option(None, help="Head-index band, e.g. 9-15; alone it targets the band's collapsed heads and keeps its healthy ones frozen."),
        top: Optional[int] = typer.Option(None, help="Target the N heads with the highest BOS mass."),
        head: list[str] = typer.Option([], "--head", help="Explicit head, e.g. L12H3 (repeatable)."),
        extra_column: list[int] = typer.Option([], "--extra-column", help="Add a whole head-index column as targets (extended surgery; repeatable)."),
        keep_healthy_in_band: bool = typer.Option(True, help="In a band, keep already-healthy heads frozen."),
        gqa: str = typer.Option("query", help="Grouped-query models: 'query' re-initialises only the query head (shared K/V frozen); 'group' the whole KV group."),
        as_json: bool = json_option(),
    ) -> None:
        """Select target heads by combinable rules; print what was selected and why; write the plan."""
        from headsurgeon.diagnosis import Diagnosis
        from headsurgeon.errors import HeadsurgeonError
        from headsurgeon.surgery import make_plan, parse_head, parse_range

        if diagnosis.is_dir():  # a surgery run: plan the next pass from its best model
            from headsurgeon.surgery.passes import best_diagnosis

            diag = best_diagnosis(diagnosis)
        else:
            diag = Diagnosis.load(diagnosis)
        quiet_for_json(as_json)
        L, H = diag.shape
        if not any([classes, band, top, head, extra_column]):
            raise HeadsurgeonError("no selection rule given; use --class bos_sink,dead, --top N, --band, --head or --extra-column")
        plan = make_plan(
            diag,
            classes=[c.strip() for c in classes.split(",")] if classes else None,
            layers=parse_range(layers, "layers", L),
            band=parse_range(band, "band", H),
            top=top,
            heads=[parse_head(h) for h in head],
            extra_columns=extra_column,
            skip_healthy_in_band=keep_healthy_in_band,
            gqa_mode=gqa,
        )
        for rule in plan.rules:
            console.print(f"rule: {rule}")
        for h, why in plan.reasons.items():
            console.print(f"  target {h:>7}  {why}")
        if plan.frozen_in_zone:
            console.print(f"kept frozen inside the zone: {', '.join(str(h) for h in plan.frozen_in_zone)}")
        console.print(f"{len(plan.targets)} targets, gqa mode '{plan.gqa_mode}'")
        for warning in plan.warnings:
            console.print(f"[yellow]warning:[/yellow] {warning}")
        if out.suffix.lower() not in (".json", ".yaml", ".yml"):  # -o names a folder, as in the other commands
            out = out / "plan.json"
        plan.save(out)
        if as_json:
            emit_json(plan.to_dict())
            return
        typer.echo(f"wrote {out}")
