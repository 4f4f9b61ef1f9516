"""What is measured at a checkpoint: headsurgeon's own diagnosis of every head (on held-out
blocks) and token-weighted perplexities, condensed into one JSON-ready row.

The diagnosis is :func:`headsurgeon.diagnosis.diagnose_encoded` unchanged (default thresholds,
query 0 excluded); the row keeps the headline numbers, and the full :class:`Diagnosis` is saved
beside the run so ``headsurgeon plan`` can use any checkpoint.
"""

from __future__ import annotations

import numpy as np

from headsurgeon.diagnosis import COLLAPSED, Diagnosis, diagnose_encoded
from headsurgeon.measurements.perplexity import perplexity
from headsurgeon.models import LoadedModel

from .config import LabConfig
from .data import LabData


def measure_checkpoint(loaded: LoadedModel, data: LabData, cfg: LabConfig) -> tuple[dict, Diagnosis]:
    diag = diagnose_encoded(loaded, data.diagnosis_prompts, prompt_source="lab held-out blocks",
                            max_length=cfg.seq_len, batch_size=cfg.eval_batch_size)
    summary = diag.summary()
    row: dict = {
        "collapsed_fraction": (summary["counts"]["bos_sink"] + summary["counts"]["dead"]) / summary["heads"],
        "counts": summary["counts"],
        "threshold_sweep": {k: v["bos_sink"] + v["dead"] for k, v in diag.threshold_sweep().items()},
        "mean_bos_mass": float(diag.bos_mass.mean()),
        "bos_mass": np.round(diag.bos_mass, 6).tolist(),
        "collapsed": np.isin(diag.classes, COLLAPSED).tolist(),
    }
    for name, seqs in data.eval_sets.items():
        res = perplexity(loaded.model, seqs, batch_size=cfg.eval_batch_size)
        row[f"{name}_ppl"] = res.ppl
    if diag.alibi is not None:
        row["alibi_spearman_all_heads"] = diag.alibi["spearman_rho_all_heads"]
    return row, diag
