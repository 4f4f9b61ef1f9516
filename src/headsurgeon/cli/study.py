"""``headsurgeon study``: surgery against its controls over seeds (calls :func:`headsurgeon.studies.run_study`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import dpi_option, emit_json, format_option, json_option, quiet_for_json, threads_option
from .display import console


def _ints(text: Optional[str], what: str) -> Optional[tuple[int, ...]]:
    if text is None:
        return None
    from headsurgeon.errors import HeadsurgeonError

    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise HeadsurgeonError(f"--{what} takes comma-separated integers, not '{text}'; write e.g. --{what} 0,1,2") from None


def _g(x, fmt: str = ".4g") -> str:
    return "n/a" if x is None else format(x, fmt)


def register(app: typer.Typer) -> None:
    @app.command("study")
    def study_cmd(
        model: Optional[str] = typer.Option(None, "--model", "-m", help="Model (default: built-in SmolLM2-135M)."),
        out: Path = typer.Option(Path("out/study"), "--out", "-o", help="Study folder (re-running the same command resumes; finished runs are reused)."),
        preset: str = typer.Option("smollm2", help="Budget preset: smollm2 (SmolLM2-135M, 48 steps, ~45 min on 2 idle CPU cores), smollm2-converged (early stopping, many hours; resumable) or tiny "
                                                   "(a tiny random Llama unless --model is given: tries the pipeline, measures nothing real)."),
        arms: Optional[str] = typer.Option(None, help="Comma-separated arms: surgery,no_reinit,random_healthy,extended,lora (stock always runs)."),
        seeds: Optional[str] = typer.Option(None, help="Comma-separated seeds (default 0,1,2)."),
        targets: Optional[int] = typer.Option(None, help="Number of target heads."),
        target_rule: Optional[str] = typer.Option(None, help="collapsed (most collapsed heads) or top (highest BOS mass, any class)."),
        extra_column: Optional[str] = typer.Option(None, help="Extended arm: head column(s) to add, e.g. 5 (default: the column with most healthy heads)."),
        corpus: Optional[str] = typer.Option(None, help="Training text (file, folder, .jsonl, python-docs, fortunes, ...)."),
        other_corpus: Optional[str] = typer.Option(None, help="Different-distribution held-out text ('none' to skip)."),
        max_steps: Optional[int] = typer.Option(None, help="Optimizer steps per training run (with --patience: the cap, over which the LR schedule is defined)."),
        patience: Optional[int] = typer.Option(None, help="Early stopping: stop an arm after N evaluations without a better held-out PPL; arms of a seed are then continued to the same budget."),
        eval_every: Optional[int] = typer.Option(None, help="Evaluate every N steps."),
        lr: Optional[float] = typer.Option(None, help="Learning rate (every training arm)."),
        seq_len: Optional[int] = typer.Option(None, help="Tokens per sequence."),
        fmt: str = format_option(),
        dpi: Optional[int] = dpi_option(),
        threads: Optional[int] = threads_option(),
        as_json: bool = json_option(),
        progress: bool = typer.Option(True, help="Show progress."),
    ) -> None:
        """Run surgery and its controls (no re-init, random healthy heads, extended, matched LoRA) over seeds; verdicts with CIs."""
        from dataclasses import replace

        from headsurgeon.studies import run_study, study_preset

        quiet_for_json(as_json)
        settings = study_preset(preset)
        training = settings.training.with_(corpus=corpus, max_steps=max_steps, patience=patience, eval_every=eval_every, lr=lr, seq_len=seq_len)
        if other_corpus is not None:
            training = replace(training, other_corpus=None if other_corpus.lower() == "none" else other_corpus)
        settings = settings.with_(
            training=training, seeds=_ints(seeds, "seeds"), n_targets=targets, target_rule=target_rule,
            extra_columns=_ints(extra_column, "extra-column"), threads=threads,
            arms=tuple(a.strip() for a in arms.split(",")) if arms else None,
        )
        source = model
        if model is None and preset == "tiny":  # "tiny" means tiny: a random 2-layer model, not SmolLM2 on a tiny budget
            from headsurgeon.models import wrap_model
            from headsurgeon.models.tiny import tiny_model_and_tokenizer

            def source():
                return wrap_model(*tiny_model_and_tokenizer("llama", seed=0))

            console.print("preset tiny: a tiny random Llama model (2 layers x 4 heads); pass --model for a real one", highlight=False)
        from headsurgeon.figure_files import figure_format

        with figure_format(fmt, dpi):
            study = run_study(source, out_dir=out, settings=settings, progress=progress)
        if as_json:
            emit_json(study.to_dict())
            return
        console.print(f"[bold]study {study.status}[/bold]: {len(study.runs)} runs ({len(study.timing['trained_now'])} trained now, "
                      f"{len(study.timing['reused'])} reused) in {study.timing['wall_seconds']:.1f} s")
        for v in study.claims():
            d = v.difference
            ci = f"[{_g(d.ci_low)}, {_g(d.ci_high)}]" if d.n > 1 else ""
            colour = {"holds": "green", "reversed": "red"}.get(v.outcome, "yellow")
            console.print(f"  [{colour}]{v.outcome:>12}[/{colour}]  {v.text}: {v.metric} {v.arm} {_g(v.arm_mean)} vs {v.reference} "
                          f"{_g(v.reference_mean)}, difference {_g(d.mean, '+.4g')} {ci} over {len(v.seeds)} seeds")
        console.print(f"  wrote {out / 'study.json'}, {out / 'study.html'}, {out / 'figures'}")
