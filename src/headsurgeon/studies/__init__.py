"""Controlled studies: surgery against its controls (no re-initialisation, random healthy heads,
extended targets, a matched-parameter LoRA), over several seeds, with bootstrap statistics and a
verdict table. See ``docs/studies.md``."""

from .aggregate import CLAIMS, METRIC_LABELS
from .arms import arm_plans, choose_targets, extended_columns, random_healthy
from .html import study_html_section, write_study_html
from .lora import LoraPieces, LoraSizing, matched_sizing, surgical_parameter_count
from .lora_run import train_lora
from .markdown import arm_table, stopping_table, study_markdown, verdict_table
from .result import StudyResult
from .run import run_study
from .settings import ARMS, STUDY_PRESETS, StudySettings, study_preset
from .stats import Stats, Verdict, bootstrap_ci, paired_verdict, summarize

__all__ = [
    "ARMS", "CLAIMS", "METRIC_LABELS", "STUDY_PRESETS", "LoraPieces", "LoraSizing", "Stats", "StudyResult", "StudySettings", "Verdict",
    "arm_plans", "arm_table", "bootstrap_ci", "choose_targets", "extended_columns", "matched_sizing", "paired_verdict", "random_healthy",
    "run_study", "stopping_table", "study_html_section", "study_markdown", "study_preset", "summarize", "surgical_parameter_count", "train_lora", "verdict_table", "write_study_html",
]
