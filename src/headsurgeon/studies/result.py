"""``StudyResult``: everything a study found, as one versioned JSON document (kind ``study``).

Keys of ``study.json``:

* ``schema_version``, ``package_version``, ``kind`` (``"study"``), ``created``, ``updated``;
* ``status``: ``running`` (written after every finished run, so a long study can be read while it
  goes) or ``finished``;
* ``model``: the model description; ``settings``: the :class:`StudySettings` that made it;
* ``heads``: the targets, the extended arm's heads and columns, the random healthy heads per seed;
* ``lora``: the matched LoRA's modules, rank, alpha and both parameter counts;
* ``runs``: one row per (arm, seed): run folder, whether it was reused, its heads, ``curves``
  (per evaluation: step, tokens, train_loss, train/heldout/other perplexity, recovery) and
  ``scalars`` (see :data:`headsurgeon.studies.measure.SCALARS`);
* ``arms``: per arm and scalar, :class:`Stats` over seeds (mean, sample std, min, max, bootstrap
  CI of the mean, the values);
* ``curves``: per arm and curve, mean and min-max band over seeds at each evaluated step;
* ``verdicts``: the claims (see :mod:`headsurgeon.studies.aggregate`), each with its arms, seeds,
  metric, effect size and outcome (``holds`` / ``reversed`` / ``inconclusive``);
* ``budgets``: per seed, the token budget every arm of that seed trained to (the largest number
  of steps any arm needed before its patience ran out or it reached the cap);
* ``timing``: wall seconds of this call, runs trained now and reused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from headsurgeon.io import envelope, now_iso, read_document, write_json

from .stats import Stats, Verdict

KIND = "study"


@dataclass
class StudyResult:
    model: dict
    settings: dict
    heads: dict
    lora: dict | None
    runs: list[dict]
    arms: dict[str, dict[str, Stats]]
    curves: dict[str, dict[str, dict]]
    verdicts: list[Verdict]
    status: str = "finished"
    timing: dict = field(default_factory=dict)
    budgets: dict = field(default_factory=dict)
    out_dir: str | None = None
    created: str = field(default_factory=now_iso)

    def stat(self, arm: str, metric: str) -> Stats:
        return self.arms[arm][metric]

    def claims(self) -> list[Verdict]:
        """The primary verdict of each claim (the verdict table's rows)."""
        return [v for v in self.verdicts if v.primary]

    def to_dict(self) -> dict:
        return {
            **envelope(KIND, created=self.created),
            "updated": now_iso(),
            "status": self.status,
            "out_dir": self.out_dir,
            "model": self.model,
            "settings": self.settings,
            "heads": self.heads,
            "lora": self.lora,
            "runs": self.runs,
            "arms": {a: {k: s.to_dict() for k, s in m.items()} for a, m in self.arms.items()},
            "curves": self.curves,
            "verdicts": [v.to_dict() for v in self.verdicts],
            "budgets": self.budgets,
            "timing": self.timing,
        }

    @classmethod
    def from_dict(cls, doc: dict) -> StudyResult:
        return cls(
            model=doc["model"], settings=doc["settings"], heads=doc["heads"], lora=doc.get("lora"), runs=doc["runs"],
            arms={a: {k: Stats.from_dict(s) for k, s in m.items()} for a, m in doc["arms"].items()},
            curves=doc["curves"], verdicts=[Verdict.from_dict(v) for v in doc["verdicts"]],
            status=doc.get("status", "finished"), timing=doc.get("timing", {}), budgets=doc.get("budgets", {}), out_dir=doc.get("out_dir"),
            created=doc.get("created", now_iso()),
        )

    def save(self, path: str | Path) -> Path:
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> StudyResult:
        p = Path(path)
        return cls.from_dict(read_document(p / "study.json" if p.is_dir() else p, kind=KIND))
