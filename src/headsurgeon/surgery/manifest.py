"""The run manifest: what was done, with what, and what came of it (``manifest.json``).

Holds the plan, the configuration, library versions, the corpus fingerprint, the input model's
frozen-part hashes, the metric history (one row per evaluation), the best step, the invariant
checks and the run status. Rewritten atomically after every evaluation.
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

from headsurgeon._version import SCHEMA_VERSION, __version__
from headsurgeon.errors import HeadsurgeonError
from headsurgeon.io import now_iso, read_json_document, write_json

MANIFEST = "manifest.json"


def versions() -> dict:
    import accelerate
    import torch
    import transformers

    return {
        "headsurgeon": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "python": platform.python_version(),
    }


def fingerprint(model: dict, plan: dict, config: dict) -> str:
    """Identity of a run: same model shape, targets, GQA mode and configuration."""
    key = {
        "model": {k: model.get(k) for k in ("name", "num_layers", "num_heads")},
        "targets": plan["targets"],
        "gqa_mode": plan["gqa_mode"],
        "config": config,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def new_manifest(*, model: dict, plan: dict, config: dict, corpus: dict, other: dict | None) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "package_version": __version__,
        "kind": "surgery_run",
        "created": now_iso(),
        "fingerprint": fingerprint(model, plan, config),
        "status": "running",
        "model": model,
        "plan": plan,
        "config": config,
        "versions": versions(),
        "corpus": corpus,
        "other_corpus": other,
        "stock": None,
        "history": [],
        "best": None,
        "input_hashes": None,
        "surgical_regions": [],
        "invariant": {},
        "timing": {},
    }


def save_manifest(run_dir: Path, manifest: dict) -> None:
    manifest["updated"] = now_iso()
    write_json(run_dir / MANIFEST, manifest)


def load_manifest(run_dir: str | Path) -> dict:
    return read_json_document(Path(run_dir) / MANIFEST, kind="surgery_run")


def run_differences(existing: dict, model: dict, plan: dict, config: dict, extra: dict | None = None) -> list[str]:
    """What makes a stored run different from the one asked for, in words (empty: the same run).

    Configuration keys the stored run does not have (options added to headsurgeon after it was
    started) count as the same when the new value is that option's default, so upgrading does
    not orphan a half-finished run.
    """
    from .config import SurgeryConfig

    diffs = []
    old_model = existing.get("model") or {}
    for key in ("name", "num_layers", "num_heads"):
        if old_model.get(key) != model.get(key):
            diffs.append(f"model {key} {old_model.get(key)!r} there, {model.get(key)!r} now")
    old_plan = existing.get("plan") or {}
    for key in ("targets", "gqa_mode"):
        if old_plan.get(key) != plan.get(key):
            diffs.append(f"plan {key} {old_plan.get(key)!r} there, {plan.get(key)!r} now")
    old_cfg = existing.get("config") or {}
    defaults = SurgeryConfig().to_dict()
    for key, value in config.items():
        if key in old_cfg:
            if old_cfg[key] != value:
                diffs.append(f"{key} {old_cfg[key]!r} there, {value!r} now")
        elif key not in defaults or value != defaults[key]:
            diffs.append(f"{key} {value!r} now, not set there")
    for key, value in (extra or {}).items():  # other top-level manifest entries that identify the run
        if existing.get(key) != value:
            diffs.append(f"{key} differs")
    return diffs


def check_same_run(run_dir: Path, fp: str, *, model: dict, plan: dict, config: dict, extra: dict | None = None,
                   what: str = "surgery run", kind: str | None = None) -> dict | None:
    """The existing manifest if ``run_dir`` holds this same run, ``None`` if empty; error if another run."""
    path = run_dir / MANIFEST
    if not path.is_file():
        if run_dir.is_dir() and any(p for p in run_dir.iterdir() if not p.name.startswith(".")):
            raise HeadsurgeonError(f"output directory {run_dir} is not empty and holds no {what}; choose a new --out")
        return None
    existing = read_json_document(path, kind=kind or "surgery_run")
    if existing.get("fingerprint") != fp:
        diffs = run_differences(existing, model, plan, config, extra)
        if diffs:
            shown = "; ".join(diffs[:3]) + (f"; and {len(diffs) - 3} more" if len(diffs) > 3 else "")
            raise HeadsurgeonError(f"output directory {run_dir} already holds a different {what} ({shown}); choose a new --out")
    return existing
