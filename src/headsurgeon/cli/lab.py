"""``headsurgeon lab run|analyze|presets``: thin wrappers over :mod:`headsurgeon.lab`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import dpi_option, emit_json, format_option, json_option, quiet_for_json, threads_option

lab_app = typer.Typer(
    help="Train small LMs from scratch that differ only in position encoding (ALiBi, RoPE, NoPE, learned) "
    "and watch head collapse form, checkpoint by checkpoint.",
    no_args_is_help=True,
)


def _summary_lines(analysis) -> list[str]:
    from headsurgeon.lab.report import summary_lines

    return summary_lines(analysis.doc)


@lab_app.command("run")
def run_cmd(
    preset: str = typer.Option("default", "--preset", "-p", help="Named setting; see `headsurgeon lab presets`."),
    out: Path = typer.Option(Path("runs/lab/default"), "--out", "-o", help="Lab folder (re-running resumes; finished runs are reused)."),
    encodings: Optional[str] = typer.Option(None, help="Comma-separated subset of alibi,rope,nope,learned."),
    seeds: Optional[str] = typer.Option(None, help="Comma-separated seeds, e.g. 0,1,2."),
    corpus: Optional[str] = typer.Option(None, help="Training text (file, folder, .jsonl, python-docs, fortunes)."),
    set_: list[str] = typer.Option([], "--set", "-s", help="Override a config field, key=value (repeatable); `lab presets` lists keys."),
    threads: Optional[int] = threads_option(),
    fmt: str = format_option(),
    dpi: Optional[int] = dpi_option(),
    as_json: bool = json_option(),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Train and diagnose every (encoding, seed) run; write lab.json and figures."""
    from headsurgeon.figure_files import figure_format
    from headsurgeon.lab import parse_override, preset as get_preset, run_lab

    changes = dict(parse_override(o) for o in set_)
    for key, raw in (("encodings", encodings), ("seeds", seeds)):
        if raw is not None:
            changes[key] = parse_override(f"{key}={raw}")[1]
    if corpus is not None:
        changes["corpus"] = corpus
    if threads is not None:  # the lab's own config field (runs record it), spelled like every other command's option
        changes["threads"] = threads
    quiet_for_json(as_json)
    cfg = get_preset(preset, **changes)
    with figure_format(fmt, dpi):
        result = run_lab(cfg, out, progress=progress, on_run=lambda r: typer.echo(f"run {r.name}: {r.status}", err=True))
    if as_json:
        emit_json(result.doc)
        return
    typer.echo("\n".join(_summary_lines(result)))
    shown = ", ".join(Path(p).name for p in result.files.values())
    typer.echo(f"wrote {out}/ ({shown}, runs/*/model)")


@lab_app.command("analyze")
def analyze_cmd(
    out: Path = typer.Argument(..., help="A lab folder written by `headsurgeon lab run`."),
    markdown: bool = typer.Option(False, help="Print the outcome as Markdown tables instead of the text summary."),
    fmt: str = format_option(),
    dpi: Optional[int] = dpi_option(),
    as_json: bool = json_option(),
) -> None:
    """Re-analyse the runs found in a lab folder (finished or not); rewrite lab.json and figures."""
    from headsurgeon.errors import HeadsurgeonError
    from headsurgeon.io import read_document
    from headsurgeon.lab import LabConfig, analyse_lab

    if not (out / "runs").is_dir():
        raise HeadsurgeonError(f"{out} holds no lab runs (no runs/ folder); pass the --out of `headsurgeon lab run`")
    cfg_path = out / "lab_config.json"
    cfg = LabConfig.from_dict(read_document(cfg_path, kind="lab_config")["config"]) if cfg_path.is_file() else None
    from headsurgeon.figure_files import figure_format

    with figure_format(fmt, dpi):
        result = analyse_lab(out, cfg=cfg)
    if as_json:
        emit_json(result.doc)
        return
    if markdown:
        from headsurgeon.lab.report import markdown_lines

        typer.echo("\n".join(markdown_lines(result.doc)))
    else:
        typer.echo("\n".join(_summary_lines(result)))


@lab_app.command("presets")
def presets_cmd() -> None:
    """List the presets and every config key usable with --set."""
    from headsurgeon.lab.config import PRESETS, field_help

    for name, (desc, _) in PRESETS.items():
        typer.echo(f"{name:8s} {desc}")
    typer.echo("\nkeys for --set key=value:")
    for key, helptext in field_help().items():
        typer.echo(f"  {key:20s} {helptext}")


def register(app: typer.Typer) -> None:
    app.add_typer(lab_app, name="lab")
