"""headsurgeon: find, explain, repair and measure collapsed attention heads.

Public API (each returns a plain object that also round-trips through versioned JSON):

* :func:`load_model` — a hub id, local folder, ``.gguf`` file or the built-in default model;
* :func:`diagnose` — per-head BOS mass / entropy / local mass and classes;
* further entry points (``make_plan``, ``operate``, ``compare``, ``report``, ``study``,
  ``extremes``, ``toy``) live in their sub-packages and are re-exported here when available.
"""

from ._version import SCHEMA_VERSION, __version__
from .diagnosis import Diagnosis, Thresholds, diagnose
from .errors import HeadsurgeonError
from .models import HeadRef, LoadedModel, load_model, wrap_model

__all__ = [
    "SCHEMA_VERSION",
    "Diagnosis",
    "HeadRef",
    "HeadsurgeonError",
    "LoadedModel",
    "Thresholds",
    "__version__",
    "diagnose",
    "load_model",
    "wrap_model",
]
