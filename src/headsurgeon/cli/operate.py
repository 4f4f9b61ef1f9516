"""``headsurgeon operate``: run a surgery plan (calls :func:`headsurgeon.surgery.operate`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .bigmodel_options import DEVICE_MAP, MAX_MEMORY, OFFLOAD_FOLDER, placement_option
from .common import emit_json, json_option, quiet_for_json, set_threads, threads_option
from .config_options import apply_overrides, config_fields, config_options
from .display import console
from .model_options import device_option, dtype_option


def _presets() -> dict:
    from headsurgeon.surgery.config import PRESETS

    return PRESETS


def register(app: typer.Typer) -> None:
    from headsurgeon.surgery.config import SurgeryConfig

    @app.command("operate")
    @config_options(SurgeryConfig, config_fields(SurgeryConfig), into="training", presets=_presets, panel="Training settings")
    def operate_cmd(
        plan: Path = typer.Argument(..., help="Plan file from `headsurgeon plan`."),
        model: Optional[str] = typer.Option(None, "--model", "-m", help="Model to operate on (default: built-in SmolLM2-135M); for a second pass, RUN/models/best."),
        out: Path = typer.Option(Path("out/surgery"), "--out", "-o", help="Run folder (re-running with the same settings resumes)."),
        preset: str = typer.Option("auto", help="Configuration preset: auto (cpu without a CUDA GPU, paper with one), paper (the paper's "
                                                 "settings: hours on a CPU), cpu (measured for a 2-core CPU: minutes), tiny (seconds, tiny models). "
                                                 "Each training setting below overrides one field of it."),
        allow_other_model: bool = typer.Option(False, "--allow-other-model", help="Apply a plan made for another model (family, shape or weights differ)."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Load the model, measure one training step and one evaluation, print trainable parameters, "
                                                              "steps, tokens, time and memory, then exit (writes nothing)."),
        device: str = device_option(),
        dtype: str = dtype_option(training=True),
        device_map: Optional[str] = DEVICE_MAP,
        max_memory: Optional[str] = MAX_MEMORY,
        offload_folder: Optional[Path] = OFFLOAD_FOLDER,
        threads: Optional[int] = threads_option(),
        as_json: bool = json_option(),
        progress: bool = typer.Option(True, help="Show a progress bar."),
        training: Optional[dict] = None,
    ) -> None:
        """Re-initialise the plan's heads, train only their slices, checkpoint, verify nothing else changed."""
        from headsurgeon.surgery import operate, preset as get_preset
        from headsurgeon.surgery.config import auto_preset

        set_threads(threads)
        quiet_for_json(as_json)
        if preset == "auto":
            preset, why = auto_preset()
            console.print(f"preset: {preset} ({why})", highlight=False)
        cfg = apply_overrides(get_preset(preset), training)
        loading = {"device": device, "dtype": dtype, "placement": placement_option(device_map, max_memory, offload_folder)}
        if dry_run:
            from headsurgeon.surgery import estimate

            est = estimate(model, plan, cfg, preset=preset, progress=progress, allow_other_model=allow_other_model, **loading)
            if as_json:
                emit_json({"kind": "surgery_estimate", **est.to_dict()})
            for line in est.lines():
                console.print(line, highlight=False)
            return
        # Ctrl-C / SIGTERM: the run's RunInterrupted (what it kept) reaches cli.main, which prints it like every error
        result = operate(model, plan, out_dir=out, config=cfg, progress=progress, allow_other_model=allow_other_model, **loading)
        m = result.manifest
        # Only the main process writes and verifies the final model; the other ranks have no verdict to judge.
        checked = bool((m["invariant"] or {}).get("final"))
        if as_json:
            emit_json(m)
        else:
            _summary(result, checked)
        if checked and not result.invariant_held:
            changed = (m["invariant"].get("final") or {}).get("changed") or []
            typer.echo(f"error: the invariant was violated: {len(changed)} frozen tensors of {result.folder.model('final')} differ from "
                       "the input model; do not use this model, and report it", err=True)
            raise typer.Exit(1)


def _summary(result, checked: bool) -> None:
    m = result.manifest
    first, last = m["history"][0], m["history"][-1]
    console.print(f"[bold]surgery {m['status']}[/bold]: {m['outcome']['steps']} steps, {m['outcome']['tokens']} tokens, "
                  f"{m['timing'].get('tokens_per_second')} tokens/s")
    for label, row in (("stock", m["stock"]), ("after re-init", first), ("final", last)):
        ppl = ", ".join(f"{k}={row[k]}" for k in ("train_ppl", "heldout_ppl", "other_ppl") if k in row)
        console.print(f"  {label:>14}: {ppl}" + (f", targets healthy {row['targets_healthy']}/{m['outcome']['targets']}" if "targets_healthy" in row else ""))
    if m["best"]:
        kept = result.run_dir / m["best"]["path"] if m["best"].get("path") else "not kept (the folder was copied without it)"
        console.print(f"  best by {m['best']['metric']}: step {m['best']['step']} ({m['best']['value']}) -> {kept}")
    console.print(f"  re-collapsed targets: {m['outcome']['recollapsed_targets'] or 'none'}")
    verdict = ("held" if result.invariant_held else "VIOLATED") if checked else "verified by the main process"
    console.print(f"  invariant (frozen parts bit-identical): {verdict}")
    for warning in m.get("warnings") or []:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    if not checked or result.invariant_held:
        console.print(f"  next: headsurgeon report {result.run_dir}")
