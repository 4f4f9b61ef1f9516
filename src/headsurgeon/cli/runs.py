"""``headsurgeon runs``: the surgery runs under a folder and their state
(calls :func:`headsurgeon.surgery.listing.list_runs`)."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import emit_json, json_option, quiet_for_json
from .display import console


def register(app: typer.Typer) -> None:
    @app.command("runs")
    def runs_cmd(
        folder: Path = typer.Argument(Path("out"), help="Folder to search (its subfolders too, 4 levels deep)."),
        as_json: bool = json_option(),
    ) -> None:
        """List the surgery runs in a folder: finished, running (a process works in it now), resumable (re-run its command), stopped or damaged."""
        from rich.table import Table

        from headsurgeon.surgery.listing import list_runs

        quiet_for_json(as_json)
        runs = list_runs(folder)
        if as_json:
            emit_json({"kind": "run_list", "folder": str(folder), "runs": [r.to_dict() for r in runs]})
            return
        if not runs:
            console.print(f"no surgery runs under {folder}")
            return
        colour = {"finished": "green", "running": "cyan", "resumable": "yellow", "stopped": "red", "damaged": "red"}
        t = Table(title=f"Surgery runs under {folder}")
        for col in ("run", "state", "model", "targets", "step", "detail", "updated (UTC)"):
            # the run's path and step are what a reader looks for: they never wrap, the detail does
            t.add_column(col, justify="right" if col in ("targets", "step") else "left",
                         no_wrap=col in ("run", "state", "targets", "step", "updated (UTC)"), max_width=16 if col == "model" else None)
        for r in runs:
            step = "–" if r.step is None else (f"{r.step}/{r.total_steps}" if r.total_steps else str(r.step))
            t.add_row((str(Path(r.path).relative_to(folder)) if Path(r.path) != folder else ".") + (" (LoRA)" if r.kind == "lora_run" else ""),
                      f"[{colour[r.state]}]{r.state}[/{colour[r.state]}]", r.model or "–", "–" if r.targets is None else str(r.targets),
                      step, r.detail, (r.updated or "–")[5:16].replace("T", " "))
        console.print(t)
