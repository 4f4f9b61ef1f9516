"""Writing a diagnosis to disk: ``diagnosis.json``, ``heatmap.png``, ``histogram.png``."""

from __future__ import annotations

from pathlib import Path

from headsurgeon.io import ensure_output_dir

from .figures import save_heatmap, save_histogram
from .result import Diagnosis


def write_diagnosis_outputs(diag: Diagnosis, out_dir: str | Path, *, prefix: str = "") -> dict[str, Path]:
    out = ensure_output_dir(out_dir)
    return {
        "json": diag.save(out / f"{prefix}diagnosis.json"),
        "heatmap": save_heatmap(diag, out / f"{prefix}heatmap.png"),
        "histogram": save_histogram(diag, out / f"{prefix}histogram.png"),
    }
