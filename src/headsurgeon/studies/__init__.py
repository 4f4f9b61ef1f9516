"""Controlled studies: surgery against its controls (no re-initialisation, random healthy heads,
extended targets, a matched-parameter LoRA), over several seeds, with bootstrap statistics and a
verdict table. See ``docs/studies.md``.

Names are imported on first use (:mod:`headsurgeon.lazy`): the study presets (the CLI's option
help) do not import torch.
"""

from headsurgeon.lazy import lazy_package

lazy_package(__name__, {
    "CLAIMS": ".aggregate", "METRIC_LABELS": ".aggregate",
    "arm_plans": ".arms", "choose_targets": ".arms", "extended_columns": ".arms", "random_healthy": ".arms",
    "study_html_section": ".html", "write_study_html": ".html",
    "LoraPieces": ".lora", "LoraSizing": ".lora", "matched_sizing": ".lora", "surgical_parameter_count": ".lora",
    "train_lora": ".lora_run",
    "arm_table": ".markdown", "stopping_table": ".markdown", "study_markdown": ".markdown", "verdict_table": ".markdown",
    "StudyResult": ".result",
    "run_study": ".run",
    "ARMS": ".settings", "STUDY_PRESETS": ".settings", "StudySettings": ".settings", "study_preset": ".settings",
    "Stats": ".stats", "Verdict": ".stats", "bootstrap_ci": ".stats", "paired_verdict": ".stats", "summarize": ".stats",
})
