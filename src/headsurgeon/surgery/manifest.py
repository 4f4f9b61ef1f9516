"""The run manifest (``manifest.json``): what was done, with what, and what came of it.

One typed record, :class:`RunManifest`, for both kinds of training run (``surgery_run`` from
``operate``, ``lora_run`` from the study's LoRA arm), so ``compare``, ``report`` and the studies
open either. Every key is documented in ``docs/schema.md`` (a test checks it). The manifest is
rewritten atomically after every checkpoint; the history it carries is cut back to the
checkpoint a resumed run starts from (the checkpoint holds its own copy of the rows).

A run's identity (:func:`fingerprint`) is the input weights' digest, the plan and the settings:
a folder is only ever continued by the same run, checked before anything is trained.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.io import now_iso, read_document, write_document
from headsurgeon.models.cpu_bf16 import bf16_products_widened

from .folder import MANIFEST, RunFolder

RUN_KINDS = ("surgery_run", "lora_run")


def versions() -> dict:
    import accelerate
    import torch
    import transformers

    from headsurgeon._version import __version__

    return {
        "headsurgeon": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "python": platform.python_version(),
    }


def environment_notes(*, bf16: bool) -> dict:
    """What about this session changes how a run's numbers are computed, beyond the versions:
    today, for a run that computes in bf16 (``bf16``), how its CPU bf16 products are computed
    (:mod:`headsurgeon.models.cpu_bf16`), so a run trained partly on a CPU with native bf16 and
    partly on one without says which session did what. Nothing for other runs: the widening may
    be on in the process for an earlier bf16 model without touching an fp32 run's numbers."""
    if not bf16:
        return {}
    return {"bf16_products": "widened to fp32 (no native bf16 on this CPU)" if bf16_products_widened() else "native"}


def fingerprint(model: dict, plan: dict, config: dict, *, weights: str | None = None, extra: dict | None = None) -> str:
    """Identity of a run: the input weights' digest, model shape, targets, GQA mode and settings."""
    key = {
        "model": {k: model.get(k) for k in ("name", "num_layers", "num_heads")},
        "weights": weights,
        "targets": plan["targets"],
        "gqa_mode": plan["gqa_mode"],
        "config": config,
        **({"extra": extra} if extra else {}),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class RunManifest:
    """Everything ``manifest.json`` holds (see docs/schema.md, "manifest.json")."""

    kind: str
    fingerprint: str
    model: dict
    plan: dict
    config: dict
    weights: str | None = None  # SHA-256 digest of the input model's parameters
    status: str = "running"
    created: str = field(default_factory=now_iso)
    updated: str | None = None
    versions: dict = field(default_factory=versions)
    corpus: dict | None = None
    other_corpus: dict | None = None
    stock: dict | None = None
    history: list[dict] = field(default_factory=list)
    best: dict | None = None
    trainable_parameters: int | None = None
    input_hashes: dict | None = None
    input_region_hashes: dict | None = None
    surgical_regions: list[dict] = field(default_factory=list)
    lora: dict | None = None
    invariant: dict = field(default_factory=dict)
    outcome: dict | None = None
    timing: dict = field(default_factory=dict)
    resumed: list[dict] = field(default_factory=list)
    prefix_cache: dict | None = None
    warnings: list[str] = field(default_factory=list)  # the model family's surgery warnings
    stopping: dict | None = None  # why the run stopped where it did (patience / cap / budget)
    dtype: str | None = None  # the frozen weights' dtype when not fp32 (bf16 / fp16); part of the identity

    def __post_init__(self):
        if self.kind not in RUN_KINDS:
            raise HeadsurgeonError(f"unknown run kind '{self.kind}'")

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict) -> RunManifest:
        """The manifest in ``doc``; a missing required key or a value of the wrong JSON type raises
        :class:`HeadsurgeonError` naming it (a hand-edited or foreign file, not a bug)."""
        missing = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING and f.name not in doc]
        if missing:
            raise HeadsurgeonError(f"it has no {', '.join(repr(m) for m in missing)}")
        for f in fields(cls):
            want, nullable = _JSON_TYPES.get(str(f.type).split(" | ")[0].split("[")[0], object), " | None" in str(f.type)
            value = doc.get(f.name)
            if f.name in doc and not (isinstance(value, want) and not (want is int and isinstance(value, bool)) or (value is None and nullable)):
                raise HeadsurgeonError(f"its '{f.name}' is {type(value).__name__} {str(value)[:40]!r}, not {want.__name__}")
        for name in ("history", "resumed", "surgical_regions"):
            bad = [r for r in doc.get(name) or [] if not isinstance(r, dict)]
            if bad:
                raise HeadsurgeonError(f"its '{name}' holds {type(bad[0]).__name__} {str(bad[0])[:40]!r}, not rows (JSON objects)")
        unnumbered = [r for r in doc.get("history") or [] if not isinstance(r.get("step"), int) or isinstance(r.get("step"), bool)]
        if unnumbered:
            raise HeadsurgeonError(f"a 'history' row has no whole-number 'step' ({str(unnumbered[0])[:60]})")
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})


#: The JSON type each annotation of :class:`RunManifest` stands for (a type not listed here is not checked).
_JSON_TYPES = {"str": str, "dict": dict, "list": list, "int": int}


def save_manifest(folder: RunFolder, manifest: RunManifest) -> None:
    manifest.updated = now_iso()
    write_document(folder.manifest, manifest.kind, manifest.to_dict())


def load_manifest(run_dir: str | Path | RunFolder, *, kind: str | None = None) -> RunManifest:
    """Read a run folder's manifest (either kind unless ``kind`` is given)."""
    folder = run_dir if isinstance(run_dir, RunFolder) else RunFolder(run_dir)
    doc = read_document(folder.manifest, kind=kind or RUN_KINDS)
    try:
        return RunManifest.from_dict(doc)
    except HeadsurgeonError as e:
        raise HeadsurgeonError(f"{folder.manifest} is not a manifest headsurgeon can read: {e}; point at a run folder "
                               "written by `headsurgeon operate` (or a study), or restore its manifest.json") from None


def run_differences(existing: RunManifest, model: dict, plan: dict, config: dict, *, weights: str | None,
                    extra: dict | None = None) -> list[str]:
    """What makes a stored run different from the one asked for, in words (empty: the same run).

    Configuration keys the stored run does not have (options added to headsurgeon after it was
    started) count as the same when the new value is that option's default, so upgrading does
    not orphan a half-finished run; likewise a run stored before weights were fingerprinted.
    """
    from .config import SurgeryConfig

    diffs = []
    for key in ("name", "num_layers", "num_heads"):
        if existing.model.get(key) != model.get(key):
            diffs.append(f"model {key} {existing.model.get(key)!r} there, {model.get(key)!r} now")
    if existing.weights is not None and weights is not None and existing.weights != weights:
        diffs.append(f"input weights {existing.weights[:12]} there, {weights[:12]} now (another model under the same name?)")
    for key in ("targets", "gqa_mode"):
        if existing.plan.get(key) != plan.get(key):
            diffs.append(f"plan {key} {existing.plan.get(key)!r} there, {plan.get(key)!r} now")
    defaults = SurgeryConfig().to_dict()
    for key, value in config.items():
        if key in existing.config:
            if existing.config[key] != value:
                diffs.append(f"{key} {existing.config[key]!r} there, {value!r} now")
        elif key not in defaults or value != defaults[key]:
            diffs.append(f"{key} {value!r} now, not set there")
    for key, value in (extra or {}).items():  # other manifest entries that identify the run (LoRA sizing)
        if getattr(existing, key, None) != value:
            diffs.append(f"{key} differs")
    return diffs


def check_same_run(folder: RunFolder, fp: str, *, kind: str, model: dict, plan: dict, config: dict, weights: str | None,
                   extra: dict | None = None, what: str = "surgery run") -> RunManifest | None:
    """The existing manifest if the folder holds this same run, ``None`` if empty; error if another run."""
    if not folder.holds_run():
        if folder.has_foreign_content():
            raise HeadsurgeonError(f"output directory {folder.root} is not empty and holds no {what}; choose a new --out")
        return None
    existing = load_manifest(folder)
    if existing.kind != kind:
        raise HeadsurgeonError(f"output directory {folder.root} holds a {existing.kind.replace('_', ' ')}, not a {what}; choose a new --out")
    if existing.fingerprint != fp:
        diffs = run_differences(existing, model, plan, config, weights=weights, extra=extra)
        if diffs:
            shown = "; ".join(diffs[:3]) + (f"; and {len(diffs) - 3} more" if len(diffs) > 3 else "")
            raise HeadsurgeonError(f"output directory {folder.root} already holds a different {what} ({shown}); choose a new --out")
    return existing


__all__ = ["MANIFEST", "RUN_KINDS", "RunManifest", "check_same_run", "fingerprint", "load_manifest", "run_differences", "save_manifest", "versions", "environment_notes"]
