"""The lab's JSON documents (versioned, written atomically as the lab goes).

``runs/<encoding>-s<seed>/run.json`` (kind ``lab_run``): ``name``, ``encoding``, ``seed``,
``fingerprint`` (hash of everything that decides the run: training config, encoding, seed,
tokenizer and corpus hashes), ``status`` (``running`` | ``finished``), ``config``,
``architecture`` (family, model type, shape, ``parameters``), ``timing`` and ``rows`` (one per
checkpoint: ``step``, ``tokens``, ``train_loss`` (mean since the previous checkpoint),
``collapsed_fraction``, ``counts``, ``threshold_sweep``, ``mean_bos_mass``, ``bos_mass`` and
``collapsed`` ``[layer][head]``, ``heldout_ppl``/``other_ppl``, and for ALiBi
``alibi_spearman_all_heads``).

``lab.json`` (kind ``lab``): the analysis of every run found (see :mod:`.analysis`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.io import envelope, read_document, write_json

from .config import LabConfig


def fingerprint(cfg: LabConfig, encoding: str, seed: int, data_info: dict) -> str:
    payload = {"config": cfg.training_dict(), "encoding": encoding, "seed": seed,
               "tokenizer": data_info["tokenizer_sha256"], "corpus": data_info["corpus"]["sha256"]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def header(kind: str) -> dict:
    """The document envelope every headsurgeon JSON carries (:func:`headsurgeon.io.envelope`)."""
    return envelope(kind)


@dataclass
class RunRecord:
    """The ``run.json`` of one run, rewritten after every checkpoint."""

    path: Path
    name: str
    encoding: str
    seed: int
    fingerprint: str
    config: dict
    status: str = "running"
    architecture: dict = field(default_factory=dict)
    timing: dict = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)

    @property
    def run_dir(self) -> Path:
        return self.path.parent

    @classmethod
    def open(cls, run_dir: Path, fp: str, *, name: str, encoding: str, seed: int, config: LabConfig) -> RunRecord:
        """The existing record of this run (same fingerprint), or a new one. A folder holding a
        different run is refused rather than overwritten."""
        path = run_dir / "run.json"
        if path.is_file():
            doc = read_document(path, kind="lab_run")
            if doc.get("fingerprint") != fp:
                raise HeadsurgeonError(f"{run_dir} holds a run made with other settings (fingerprint {doc.get('fingerprint')} != {fp}); "
                                       "choose another --out, or delete that run folder to redo it")
            return cls(path=path, **{k: doc[k] for k in ("name", "encoding", "seed", "fingerprint", "config", "status", "architecture", "timing", "rows")})
        return cls(path=path, name=name, encoding=encoding, seed=seed, fingerprint=fp, config=config.to_dict())

    @classmethod
    def load(cls, path: Path) -> RunRecord:
        doc = read_document(path, kind="lab_run")
        return cls(path=Path(path), **{k: doc[k] for k in ("name", "encoding", "seed", "fingerprint", "config", "status", "architecture", "timing", "rows")})

    def to_dict(self) -> dict:
        return {**header("lab_run"), "name": self.name, "encoding": self.encoding, "seed": self.seed, "fingerprint": self.fingerprint,
                "status": self.status, "config": self.config, "architecture": self.architecture, "timing": self.timing, "rows": self.rows}

    def write(self) -> Path:
        return write_json(self.path, self.to_dict())


def find_runs(out_dir: Path) -> list[RunRecord]:
    """Every ``runs/*/run.json`` under a lab folder, in name order."""
    return [RunRecord.load(p) for p in sorted((Path(out_dir) / "runs").glob("*/run.json"))]
