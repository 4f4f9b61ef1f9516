"""``headsurgeon toy train|compare|presets``: thin wrappers over :mod:`headsurgeon.toy`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Optional

import typer

from .common import dpi_option, emit_json, format_option, json_option, threads_option

toy_app = typer.Typer(
    help="Toy lab: train small transformers on Bigram-Backcopy and watch attention sinks, "
    "value drains and residual peaks form (or not, under ReLU attention / SGD).",
    no_args_is_help=True,
)

_SET_HELP = "Override a config field, key=value (repeatable); `headsurgeon toy presets` lists keys."


def _config(preset_name: str, steps: Optional[int], seed: Optional[int], text: Optional[Path],
            overrides: list[str], threads: Optional[int] = None, old_steps: Optional[int] = None):
    from headsurgeon.toy.config import parse_override, preset

    changes = dict(parse_override(o) for o in overrides)
    if old_steps is not None:
        typer.echo("warning: toy --steps is deprecated; use --max-steps (the name operate and study use)", err=True)
        steps = steps if steps is not None else old_steps
    if steps is not None:
        changes["steps"] = steps
    if threads is not None:
        changes["threads"] = threads
    if seed is not None:
        changes["seed"] = seed
    if text is not None:
        changes["text_path"] = str(text)
    return preset(preset_name, **changes)


def _out(out: Optional[Path], kind: str, preset_name: str) -> Path:
    return out or Path("runs") / "toy" / f"{kind}-{preset_name}-{datetime.now():%Y%m%d-%H%M%S}"


@toy_app.command("train")
def train_cmd(
    preset: str = typer.Option("tiny-1l", "--preset", "-p", help="Named setting; see `toy presets`."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output directory (default runs/toy/...)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Override the preset's number of training steps."),
    old_steps: Optional[int] = typer.Option(None, "--steps", hidden=True, help="Deprecated spelling of --max-steps."),
    seed: Optional[int] = typer.Option(None, help="Override the seed."),
    text: Optional[Path] = typer.Option(None, help="Text file for the bigram statistics."),
    set_: list[str] = typer.Option([], "--set", "-s", help=_SET_HELP),
    fmt: str = format_option(),
    dpi: Optional[int] = dpi_option(),
    threads: Optional[int] = threads_option(),
    as_json: bool = json_option(),
    progress: bool = typer.Option(True, help="Show a progress bar with steps/s."),
) -> None:
    """Train one toy model; write toy_run.json, dynamics.csv, dynamics.png, model.safetensors."""
    from headsurgeon.toy import train
    from headsurgeon.toy.results import run_note

    config = _config(preset, max_steps, seed, text, set_, threads, old_steps)
    out_dir = _out(out, "train", preset)
    from headsurgeon.figure_files import figure_format

    with figure_format(fmt, dpi):
        result = train(config, out_dir=out_dir, progress=progress)
    if as_json:
        emit_json(result.to_json())
        return
    typer.echo("\n".join(run_note(result, title=f"toy train --preset {preset}")))
    typer.echo(f"wrote {out_dir}/ (toy_run.json, dynamics.csv, dynamics.png, model.safetensors)")


@toy_app.command("compare")
def compare_cmd(
    preset: str = typer.Option("tiny-1l", "--preset", "-p", help="Base setting; see `toy presets`."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output directory (default runs/toy/...)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Override the preset's number of training steps."),
    old_steps: Optional[int] = typer.Option(None, "--steps", hidden=True, help="Deprecated spelling of --max-steps."),
    seed: Optional[int] = typer.Option(None, help="Override the seed."),
    text: Optional[Path] = typer.Option(None, help="Text file for the bigram statistics."),
    set_: list[str] = typer.Option([], "--set", "-s", help=_SET_HELP),
    variant: list[str] = typer.Option([], "--variant", help="softmax-adamw, relu-adamw, softmax-sgd (default: all)."),
    fmt: str = format_option(),
    dpi: Optional[int] = dpi_option(),
    threads: Optional[int] = threads_option(),
    as_json: bool = json_option(),
    progress: bool = typer.Option(True, help="Show a progress bar with steps/s."),
) -> None:
    """Train softmax+AdamW, ReLU attention and SGD on one setting; draw them side by side."""
    from headsurgeon.toy.compare import VARIANTS, compare_variants
    from headsurgeon.toy.results import compare_note

    config = _config(preset, max_steps, seed, text, set_, threads, old_steps)
    out_dir = _out(out, "compare", preset)
    from headsurgeon.figure_files import figure_format

    with figure_format(fmt, dpi):
        result = compare_variants(config, out_dir=out_dir, variants=tuple(variant) or VARIANTS, progress=progress)
    if as_json:
        emit_json(result.to_json())
        return
    typer.echo("\n".join(compare_note(result, title=f"toy compare --preset {preset}")))
    typer.echo(f"wrote {out_dir}/ (compare.png, toy_compare.json, one directory per variant)")


@toy_app.command("presets")
def presets_cmd() -> None:
    """List the presets and every config key usable with --set."""
    from headsurgeon.toy.config import PRESETS, field_help

    for name, (desc, _) in PRESETS.items():
        typer.echo(f"{name:10s} {desc}")
    typer.echo("\nkeys for --set key=value:")
    for key, helptext in field_help().items():
        typer.echo(f"  {key:20s} {helptext}")


def register(app: typer.Typer) -> None:
    app.add_typer(toy_app, name="toy")
