"""``run_lab``: train and diagnose every (encoding, seed) run of a lab, then analyse them.

Runs go seed by seed (all encodings of seed 0 first), so an interrupted lab already holds a
comparable set. A finished run is reused, an interrupted one resumes from its last checkpoint,
and the analysis is rewritten after every run (``lab.json``) and every seed (figures).
"""

from __future__ import annotations

import time
from pathlib import Path

from headsurgeon.io import ensure_output_dir, write_json

from .config import LabConfig
from .results import header


def run_lab(cfg: LabConfig, out_dir: str | Path, *, progress: bool = True, figures: bool = True, on_run=None):
    """Train every run of ``cfg`` into ``out_dir``; returns the :class:`~.analysis.LabAnalysis`.

    ``out_dir`` receives ``lab_config.json``, ``tokenizer/``, ``runs/<encoding>-s<seed>/``
    (see :mod:`.train`), ``lab.json`` and the figures. ``on_run(record)`` is called after each run.
    """
    from .analysis import analyse_lab
    from .data import build_lab_data
    from .train import train_run

    out = ensure_output_dir(out_dir)
    write_json(out / "lab_config.json", {**header("lab_config"), "config": cfg.to_dict()})
    t0 = time.perf_counter()
    data = build_lab_data(cfg, out, progress=progress)
    data_seconds = time.perf_counter() - t0
    result = None
    for seed in cfg.seeds:
        for encoding in cfg.encodings:
            record = train_run(encoding, seed, cfg, data, out / "runs" / f"{encoding}-s{seed}", progress=progress)
            if on_run is not None:
                on_run(record)
            # lab.json after every run; the figures (seconds of matplotlib) once per seed
            result = analyse_lab(out, cfg=cfg, data_info=data.info, extra_timing={"data_seconds": data_seconds},
                                 figures=figures and encoding == cfg.encodings[-1])
    return result
