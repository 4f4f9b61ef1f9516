"""``headsurgeon operate``: run a surgery plan (calls :func:`headsurgeon.surgery.operate`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import emit_json, json_option, quiet_for_json, set_threads, threads_option
from .display import console


def _preset_defaults(name: str) -> str:
    """``[preset default: cpu 0.001 · paper 5e-05 · tiny 0.01]`` for the help of option ``name``."""
    from headsurgeon.surgery.config import PRESETS

    def show(v) -> str:
        if v is None:
            return "none"
        if isinstance(v, bool):
            return "on" if v else "off"
        return f"{v:g}" if isinstance(v, float) else str(v)

    return " [preset default: " + " · ".join(f"{p} {show(getattr(c, name))}" for p, c in PRESETS.items()) + "]"


def register(app: typer.Typer) -> None:
    d = _preset_defaults

    @app.command("operate")
    def operate_cmd(
        plan: Path = typer.Argument(..., help="Plan file from `headsurgeon plan`."),
        model: Optional[str] = typer.Option(None, "--model", "-m", help="Model to operate on (default: built-in SmolLM2-135M); for a second pass, RUN/models/best."),
        out: Path = typer.Option(Path("out/surgery"), "--out", "-o", help="Run folder (re-running with the same settings resumes)."),
        preset: str = typer.Option("auto", help="Configuration preset: auto (cpu without a CUDA GPU, paper with one), paper (the paper's "
                                                 "settings: hours on a CPU), cpu (measured for a 2-core CPU: minutes), tiny (seconds, tiny models)."),
        corpus: Optional[str] = typer.Option(None, help="Training text: file, folder, .jsonl, datasets folder, hf:<name>, python-docs, fortunes." + d("corpus")),
        other_corpus: Optional[str] = typer.Option(None, help="Different-distribution held-out text ('none' to skip)." + d("other_corpus")),
        lr: Optional[float] = typer.Option(None, help="Learning rate." + d("lr")),
        weight_decay: Optional[float] = typer.Option(None, help="Weight decay on the surgical slices only." + d("weight_decay")),
        max_steps: Optional[int] = typer.Option(None, help="Optimizer steps (overrides --epochs)." + d("max_steps")),
        epochs: Optional[int] = typer.Option(None, help="Epochs when --max-steps is not given." + d("epochs")),
        seq_len: Optional[int] = typer.Option(None, help="Tokens per sequence." + d("seq_len")),
        batch_size: Optional[int] = typer.Option(None, help="Sequences per micro-batch." + d("batch_size")),
        grad_accum: Optional[int] = typer.Option(None, help="Micro-batches per optimizer step." + d("grad_accum")),
        precision: Optional[str] = typer.Option(None, help="fp32 | bf16 | fp16 (needs --allow-fp16)." + d("precision")),
        allow_fp16: bool = typer.Option(False, help="Permit fp16 training."),
        gradient_checkpointing: Optional[bool] = typer.Option(None, help="Recompute activations in backward to save memory." + d("gradient_checkpointing")),
        clip_norm: Optional[float] = typer.Option(None, help="Gradient clip norm (0: off)." + d("clip_norm")),
        eval_every: Optional[int] = typer.Option(None, help="Evaluate and checkpoint every N steps." + d("eval_every")),
        best_metric: Optional[str] = typer.Option(None, help="heldout_ppl | train_ppl | other_ppl | targets_healthy." + d("best_metric")),
        seed: Optional[int] = typer.Option(None, help="Seed for re-initialisation, data order, dropout." + d("seed")),
        cache_frozen_prefix: Optional[bool] = typer.Option(None, help="After the first epoch, skip the frozen layers below the lowest target (keeps their output per sequence in memory)." + d("cache_frozen_prefix")),
        prefix_cache_gb: Optional[float] = typer.Option(None, help="Memory cap for --cache-frozen-prefix (GiB); sequences beyond it are recomputed." + d("prefix_cache_gb")),
        dry_run: bool = typer.Option(False, "--dry-run", help="Load the model, measure one training step and one evaluation, print trainable parameters, "
                                                              "steps, tokens, time and memory, then exit (writes nothing)."),
        allow_other_model: bool = typer.Option(False, "--allow-other-model", help="Apply a plan made for another model (family, shape or weights differ)."),
        threads: Optional[int] = threads_option(),
        as_json: bool = json_option(),
        progress: bool = typer.Option(True, help="Show a progress bar."),
    ) -> None:
        """Re-initialise the plan's heads, train only their slices, checkpoint, verify nothing else changed."""
        from headsurgeon.surgery import RunInterrupted, operate, preset as get_preset
        from headsurgeon.surgery.config import auto_preset

        set_threads(threads)
        quiet_for_json(as_json)
        if preset == "auto":
            preset, why = auto_preset()
            console.print(f"preset: {preset} ({why})", highlight=False)
        cfg = get_preset(preset).with_(
            corpus=corpus, lr=lr, weight_decay=weight_decay, max_steps=max_steps, epochs=epochs, seq_len=seq_len,
            batch_size=batch_size, grad_accum=grad_accum, precision=precision, allow_fp16=allow_fp16 or None,
            gradient_checkpointing=gradient_checkpointing, clip_norm=clip_norm, eval_every=eval_every,
            best_metric=best_metric, seed=seed, cache_frozen_prefix=cache_frozen_prefix, prefix_cache_gb=prefix_cache_gb,
        )
        if other_corpus is not None:
            from dataclasses import replace

            cfg = replace(cfg, other_corpus=None if other_corpus.lower() == "none" else other_corpus)
        if dry_run:
            from headsurgeon.surgery import estimate

            est = estimate(model, plan, cfg, preset=preset, progress=progress, allow_other_model=allow_other_model)
            if as_json:
                emit_json({"kind": "surgery_estimate", **est.to_dict()})
            for line in est.lines():
                console.print(line, highlight=False)
            return
        try:
            result = operate(model, plan, out_dir=out, config=cfg, progress=progress, allow_other_model=allow_other_model)
        except RunInterrupted as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(130) from None
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
        console.print(f"  best by {m['best']['metric']}: step {m['best']['step']} ({m['best']['value']}) -> {result.run_dir / m['best']['path']}")
    console.print(f"  re-collapsed targets: {m['outcome']['recollapsed_targets'] or 'none'}")
    verdict = ("held" if result.invariant_held else "VIOLATED") if checked else "verified by the main process"
    console.print(f"  invariant (frozen parts bit-identical): {verdict}")
    for warning in m.get("warnings") or []:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    if not checked or result.invariant_held:
        console.print(f"  next: headsurgeon report {result.run_dir}")
