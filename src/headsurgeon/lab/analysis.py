"""The lab's questions, answered from its run records (nothing is re-measured here).

1. **Collapse over training**: the fraction of heads headsurgeon classes as collapsed (BOS-sink
   or DEAD) at every checkpoint, per encoding (mean and range over seeds).
2. **Slope against BOS mass**: for every head, its ALiBi slope (taken from the ALiBi runs'
   diagnoses, i.e. from transformers' ``build_alibi_tensor``) against its BOS mass; Spearman's
   rho over all heads and per layer, at every checkpoint, and of the *change* since step 0 (the
   untrained model already ranks heads by slope: gentle slopes leave position 0 reachable).
   For the other encodings the same per-index slopes are used as a null control: their head
   indices mean nothing, so their rho should scatter around 0.
3. **Did the models learn**: train / held-out / other-distribution perplexity per checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from headsurgeon.io import write_json

from .config import ENCODINGS
from .results import RunRecord, find_runs, header

_SERIES = ("collapsed_fraction", "mean_bos_mass", "heldout_ppl", "other_ppl", "train_loss")


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman's rho, or None when either side is constant (rho undefined)."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(spearmanr(x, y)[0])


def run_slopes(runs: list[RunRecord]) -> list[float] | None:
    """ALiBi slopes per head index, as the ALiBi runs' own diagnoses report them."""
    from headsurgeon.diagnosis import Diagnosis

    for r in runs:
        if r.encoding == "alibi":
            path = r.run_dir / "diagnoses" / "step-0.json"
            if path.is_file():
                alibi = Diagnosis.load(path).alibi
                if alibi is not None:
                    return alibi["slopes"]
    return None


def slope_relation(bos: np.ndarray, bos0: np.ndarray, slopes: np.ndarray) -> dict:
    """Spearman rho of slope against BOS mass (and against its change since step 0)."""
    per_head = np.broadcast_to(slopes[None, :], bos.shape)
    return {
        "rho_all_heads": spearman(per_head, bos),
        "rho_per_layer": [spearman(slopes, bos[l]) for l in range(bos.shape[0])],
        "rho_head_index_means": spearman(slopes, bos.mean(0)),
        "rho_change_all_heads": spearman(per_head, bos - bos0),
        "rho_change_per_layer": [spearman(slopes, (bos - bos0)[l]) for l in range(bos.shape[0])],
    }


def _stats(values: list[float | None]) -> dict | None:
    v = [x for x in values if x is not None]
    if not v:
        return None
    return {"mean": float(np.mean(v)), "min": float(np.min(v)), "max": float(np.max(v)), "n": len(v)}


def analyse_runs(runs: list[RunRecord]) -> dict:
    """Per-encoding series over checkpoints, slope relations and the end-of-training picture."""
    slopes = run_slopes(runs)
    slopes_arr = None if slopes is None else np.asarray(slopes)
    per_run, encodings = {}, {}
    for r in runs:
        entry = {"encoding": r.encoding, "seed": r.seed, "status": r.status, "steps": [row["step"] for row in r.rows]}
        if slopes_arr is not None and r.rows and len(r.rows[0]["bos_mass"][0]) == len(slopes_arr):
            bos0 = np.asarray(r.rows[0]["bos_mass"])
            entry["slope_relation"] = [{"step": row["step"], **slope_relation(np.asarray(row["bos_mass"]), bos0, slopes_arr)} for row in r.rows]
        per_run[r.name] = entry
    for enc in [e for e in ENCODINGS if any(r.encoding == e for r in runs)]:
        group = [r for r in runs if r.encoding == enc and r.rows]
        steps = sorted({row["step"] for r in group for row in r.rows})
        series = {}
        for key in _SERIES:
            series[key] = [_stats([next((row.get(key) for row in r.rows if row["step"] == s), None) for r in group]) for s in steps]
        rel = {}
        if slopes_arr is not None:
            for key in ("rho_all_heads", "rho_head_index_means", "rho_change_all_heads"):
                rel[key] = [_stats([next((x[key] for x in per_run[r.name].get("slope_relation", []) if x["step"] == s), None) for r in group])
                            for s in steps]
        encodings[enc] = {"runs": [r.name for r in group], "finished": sum(r.status == "finished" for r in group),
                          "steps": steps, "series": series, "slope_relation_over_steps": rel,
                          "start": _snapshot(group, slopes_arr, first=True),
                          "end": _snapshot([r for r in group if r.status == "finished"] or group, slopes_arr, first=False)}
    return {"slopes": slopes, "encodings": encodings, "runs": per_run}


def _snapshot(group: list[RunRecord], slopes: np.ndarray | None, *, first: bool) -> dict:
    """Step 0 (``first``) or the last checkpoint *common to the group's runs* (the caller passes
    only the finished runs for the end, when there are any): per head index
    BOS mass and collapse counts pooled over layers and seeds, and the slope relation pooled
    over seeds (every head of every seed one point)."""
    if not group:
        return {}
    step = 0 if first else min(r.rows[-1]["step"] for r in group)
    rows = [next(row for row in r.rows if row["step"] == step) for r in group]
    bos = np.stack([np.asarray(row["bos_mass"]) for row in rows])  # [seeds, L, H]
    bos0 = np.stack([np.asarray(r.rows[0]["bos_mass"]) for r in group])
    collapsed = np.stack([np.asarray(row["collapsed"]) for row in rows])
    out = {
        "step": step,
        "seeds": [r.seed for r in group],
        "collapsed_fraction": _stats([row["collapsed_fraction"] for row in rows]),
        "mean_bos_mass": _stats([row["mean_bos_mass"] for row in rows]),
        "heldout_ppl": _stats([row.get("heldout_ppl") for row in rows]),
        "other_ppl": _stats([row.get("other_ppl") for row in rows]),
        "bos_mass_by_head_index": bos.mean((0, 1)).round(6).tolist(),
        "collapsed_by_head_index": collapsed.sum((0, 1)).astype(int).tolist(),
        "collapsed_by_layer": collapsed.sum((0, 2)).astype(int).tolist(),
    }
    if slopes is not None and bos.shape[-1] == len(slopes):
        per_head = np.broadcast_to(slopes, bos.shape)
        L = bos.shape[1]
        out["pooled"] = {
            "rho_all_heads": spearman(per_head, bos),
            "rho_per_layer": [spearman(per_head[:, l], bos[:, l]) for l in range(L)],
            "rho_change_all_heads": spearman(per_head, bos - bos0),
            "rho_change_per_layer": [spearman(per_head[:, l], (bos - bos0)[:, l]) for l in range(L)],
            "median_slope_collapsed": float(np.median(per_head[collapsed])) if collapsed.any() else None,
            "median_slope_not_collapsed": float(np.median(per_head[~collapsed])) if (~collapsed).any() else None,
        }
    return out


@dataclass
class LabAnalysis:
    doc: dict
    files: dict

    @property
    def encodings(self) -> dict:
        return self.doc["encodings"]


def analyse_lab(out_dir: str | Path, *, cfg=None, data_info: dict | None = None, extra_timing: dict | None = None,
                figures: bool = True) -> LabAnalysis:
    """Analyse every run under ``out_dir``; write ``lab.json`` (and the figures)."""
    out = Path(out_dir)
    runs = find_runs(out)
    doc = {**header("lab"), **({"config": cfg.to_dict()} if cfg is not None else {})}
    if cfg is not None:
        from .architectures import differences

        doc["differences"] = differences(cfg)
    if data_info is not None:
        doc["data"] = {k: v for k, v in data_info.items() if k != "corpus"} | {"corpus": {k: data_info["corpus"][k] for k in (
            "source", "documents", "train_tokens", "heldout_tokens", "train_sequences", "heldout_sequences", "sha256") if k in data_info["corpus"]}}
    doc["architectures"] = {r.encoding: r.architecture for r in runs if r.architecture}
    doc["timing"] = {"runs": {r.name: r.timing for r in runs}, **(extra_timing or {})}
    doc.update(analyse_runs(runs))
    files = {"json": str(write_json(out / "lab.json", doc))}
    if figures and runs:
        from .figures import write_figures

        files.update(write_figures(doc, runs, out))
    return LabAnalysis(doc, files)
