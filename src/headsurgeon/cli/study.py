"""``headsurgeon study``: surgery against its controls over seeds (calls :func:`headsurgeon.studies.run_study`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .bigmodel_options import DEVICE_MAP, MAX_MEMORY, OFFLOAD_FOLDER, placement_option
from .common import dpi_option, emit_json, format_option, json_option, quiet_for_json, threads_option
from .config_options import apply_overrides, config_fields, config_options
from .display import console
from .model_options import device_option, dtype_option


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


def _training_presets() -> dict:
    from headsurgeon.studies.settings import STUDY_PRESETS

    return {name: settings.training for name, settings in STUDY_PRESETS.items()}


def _study_presets() -> dict:
    from headsurgeon.studies.settings import STUDY_PRESETS

    return STUDY_PRESETS


#: Training fields a study sets itself: the seed per run (``--seeds``), re-initialisation per arm.
STUDY_OWNED = ("seed", "reinitialise")
#: Study fields with options of their own (``--threads`` is shared by every computing command).
STUDY_SHARED = ("threads",)


def register(app: typer.Typer) -> None:
    from headsurgeon.studies.settings import StudySettings
    from headsurgeon.surgery.config import SurgeryConfig

    @app.command("study")
    @config_options(StudySettings, config_fields(StudySettings, exclude=STUDY_SHARED), into="study_fields", presets=_study_presets,
                    panel="Study settings")
    @config_options(SurgeryConfig, config_fields(SurgeryConfig, exclude=STUDY_OWNED), into="training", presets=_training_presets,
                    panel="Training settings (every training arm)",
                    notes={"patience": "Arms of a seed that stop early are then continued to the same budget."})
    def study_cmd(
        model: Optional[str] = typer.Option(None, "--model", "-m", help="Model (default: built-in SmolLM2-135M)."),
        out: Path = typer.Option(Path("out/study"), "--out", "-o", help="Study folder (re-running the same command resumes; finished runs are reused)."),
        preset: str = typer.Option("smollm2", help="Budget preset: smollm2 (SmolLM2-135M, 48 steps, ~45 min on 2 idle CPU cores), smollm2-converged (early stopping, many hours; resumable) or tiny "
                                                   "(a tiny random Llama unless --model is given: tries the pipeline, measures nothing real)."),
        arms: Optional[str] = typer.Option(None, help="Comma-separated arms: surgery,no_reinit,random_healthy,extended,lora (stock always runs)."),
        seeds: Optional[str] = typer.Option(None, help="Comma-separated seeds (default 0,1,2)."),
        extra_column: Optional[str] = typer.Option(None, help="Extended arm: head column(s) to add, e.g. 5 (default: the column with most healthy heads)."),
        fmt: str = format_option(),
        dpi: Optional[int] = dpi_option(),
        device: str = device_option(),
        dtype: str = dtype_option(training=True),
        device_map: Optional[str] = DEVICE_MAP,
        max_memory: Optional[str] = MAX_MEMORY,
        offload_folder: Optional[Path] = OFFLOAD_FOLDER,
        threads: Optional[int] = threads_option(),
        as_json: bool = json_option(),
        progress: bool = typer.Option(True, help="Show progress."),
        training: Optional[dict] = None,
        study_fields: Optional[dict] = None,
    ) -> None:
        """Run surgery and its controls (no re-init, random healthy heads, extended, matched LoRA) over seeds; verdicts with CIs."""
        from headsurgeon.studies import run_study, study_preset

        quiet_for_json(as_json)
        settings = study_preset(preset)
        settings = apply_overrides(settings, {**study_fields, "training": apply_overrides(settings.training, training)})
        settings = settings.with_(seeds=_ints(seeds, "seeds"), extra_columns=_ints(extra_column, "extra-column"), threads=threads,
                                  arms=tuple(a.strip() for a in arms.split(",")) if arms else None)
        placement = placement_option(device_map, max_memory, offload_folder)
        source = model
        if model is None and preset == "tiny":  # "tiny" means tiny: a random 2-layer model, not SmolLM2 on a tiny budget
            from headsurgeon.models import wrap_model
            from headsurgeon.models.loading import parse_dtype
            from headsurgeon.models.tiny import tiny_model_and_tokenizer

            def source():
                lm = wrap_model(*tiny_model_and_tokenizer("llama", seed=0))
                lm.model.to(parse_dtype(dtype))  # --dtype applies to the built-in tiny model too
                return lm

            console.print("preset tiny: a tiny random Llama model (2 layers x 4 heads); pass --model for a real one", highlight=False)
        from headsurgeon.figure_files import figure_format

        with figure_format(fmt, dpi):
            study = run_study(source, out_dir=out, settings=settings, progress=progress, device=device, dtype=dtype, placement=placement)
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
