"""headsurgeon: find, explain, repair and measure collapsed attention heads.

Public API (each call returns a plain object that also round-trips through versioned JSON):

* :func:`load_model` / :func:`wrap_model` — a hub id, local folder, ``.gguf`` file, the built-in
  default model (``None``), or a model already in memory;
* :func:`diagnose` — per-head BOS mass / entropy / local mass and classes;
* :func:`make_plan`, :func:`preset`, :func:`operate` — choose target heads, pick a training
  configuration, re-initialise and retrain them;
* :func:`compare`, :func:`build_report` — what changed, as tables, figures and one HTML file;
* :func:`run_study` — surgery against its controls, over seeds;
* :func:`run_extremes` — attention sinks, value drains, residual peaks, active-dormant heads;
* :mod:`headsurgeon.toy` — the Bigram-Backcopy lab.

Names are imported lazily, so ``import headsurgeon`` (and the CLI's ``--help``) stay fast.
"""

from __future__ import annotations

import importlib

from ._version import SCHEMA_VERSION, __version__
from .errors import HeadsurgeonError

_LAZY = {
    "Diagnosis": "headsurgeon.diagnosis",
    "Thresholds": "headsurgeon.diagnosis",
    "diagnose": "headsurgeon.diagnosis",
    "HeadRef": "headsurgeon.models",
    "LoadedModel": "headsurgeon.models",
    "load_model": "headsurgeon.models",
    "wrap_model": "headsurgeon.models",
    "SurgeryPlan": "headsurgeon.surgery",
    "SurgeryConfig": "headsurgeon.surgery",
    "make_plan": "headsurgeon.surgery",
    "preset": "headsurgeon.surgery",
    "operate": "headsurgeon.surgery",
    "compare": "headsurgeon.evaluation",
    "build_report": "headsurgeon.report",
    "run_study": "headsurgeon.studies",
    "run_extremes": "headsurgeon.extremes",
}

__all__ = ["SCHEMA_VERSION", "HeadsurgeonError", "__version__", *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'headsurgeon' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
