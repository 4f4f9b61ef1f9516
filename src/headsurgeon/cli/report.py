"""``headsurgeon report``: one self-contained HTML report of a surgery run
(calls :func:`headsurgeon.report.build_report`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .bigmodel_options import DEVICE_MAP, MAX_MEMORY, OFFLOAD_FOLDER, placement_option
from .common import emit_json, json_option, quiet_for_json, set_threads, threads_option
from .config_options import apply_overrides, config_fields, config_options
from .display import console
from .model_options import device_option, dtype_option


def register(app: typer.Typer) -> None:
    from headsurgeon.report.options import ReportOptions

    @app.command("report")
    @config_options(ReportOptions, config_fields(ReportOptions), into="settings", panel="Report settings")
    def report_cmd(
        run_dir: Path = typer.Argument(..., help="Run folder written by `headsurgeon operate` (finished or still running)."),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder to write report.html and report.json in (default RUN_DIR), or an .html file (its .json goes beside it)."),
        generations: bool = typer.Option(True, help="Sample side-by-side generations from stock, best and final."),
        dormancy: bool = typer.Option(True, help="Measure MLP dormancy per layer of each checkpoint."),
        ablation: bool = typer.Option(True, help="Ablate target, collapsed and healthy heads before and after repair."),
        fast: bool = typer.Option(False, "--fast", help="Skip everything that loads a model (generations, dormancy, ablation)."),
        stock_model: Optional[str] = typer.Option(None, help="Stock model folder (default: the model the run was made from)."),
        generation_prompts: Optional[Path] = typer.Option(None, "--generation-prompts", help="Prompts to generate from: blank-line separated text or JSONL with 'text' (default: built-in set)."),
        old_prompts: Optional[Path] = typer.Option(None, "--prompts", hidden=True, help="Deprecated spelling of --generation-prompts."),
        reuse: bool = typer.Option(True, help="Reuse generations / dormancy / ablation cached in RUN_DIR/evaluation when settings match."),
        study: Optional[Path] = typer.Option(None, "--study", help="Add the verdicts and figures of a `headsurgeon study` folder as a section."),
        threads: Optional[int] = threads_option(),
        as_json: bool = json_option(),
        progress: bool = typer.Option(True, help="Show progress bars."),
        device: str = device_option(),
        dtype: str = dtype_option(),
        device_map: Optional[str] = DEVICE_MAP,
        max_memory: Optional[str] = MAX_MEMORY,
        offload_folder: Optional[Path] = OFFLOAD_FOLDER,
        settings: Optional[dict] = None,
    ) -> None:
        """Write report.html (figures embedded, opens offline) and report.json with every number in it."""
        from headsurgeon.prompts import read_prompt_file
        from headsurgeon.report import ReportOptions, build_report

        set_threads(threads)
        quiet_for_json(as_json)
        prompts = generation_prompts or old_prompts
        if old_prompts is not None:
            typer.echo("warning: --prompts is deprecated here (it reads like diagnose --prompts); use --generation-prompts", err=True)
        if out is not None and out.suffix.lower() not in (".html", ".htm"):
            out = out / "report.html"
        placement = placement_option(device_map, max_memory, offload_folder)
        opts = apply_overrides(ReportOptions(
            generations=generations and not fast, dormancy=dormancy and not fast, ablation=ablation and not fast,
            stock_model=stock_model, generation_prompts=tuple(p.text for p in read_prompt_file(prompts)) if prompts else None,
            reuse=reuse, study=str(study) if study else None, dtype=dtype, device=device,
            **({} if placement is None else {"device_map": placement.device_map, "max_memory": placement.max_memory,
                                             "offload_folder": placement.offload_folder}),
        ), settings)
        report = build_report(run_dir, out=out, options=opts, progress=progress)
        d = report.data
        if as_json:
            emit_json(d)
            return
        console.print(d["summary"]["what_happened"], highlight=False)
        console.print(d["summary"]["what_it_cannot_show"], highlight=False)
        for n in d["notes"]:
            console.print(f"[yellow]note:[/yellow] {n}")
        for piece in ("generations", "dormancy", "ablation"):
            if "skipped" in d[piece]:
                console.print(f"{piece}: {d[piece]['skipped']}")
        console.print(f"wrote {report.html_path} ({report.html_path.stat().st_size // 1024} KiB, {len(report.figures)} figures) and {report.json_path}")
