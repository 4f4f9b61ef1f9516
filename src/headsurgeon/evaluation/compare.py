"""``compare``: what changed in every head between two or more diagnoses, split by surgical zone.

The first input is the reference ("before"); every later input is compared with it. For a run
folder that is the stock model followed by every evaluation of the run, so the comparison is
also the run's drift *trajectory*: whether drift outside the zone happens early (global
redistribution) and drift of frozen in-zone heads late (local degradation), the two phenomena
of SCIENCE.md. The result stores only the per-input BOS masses and classes; every table is
derived from them (see :mod:`.drift` for the definitions).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.io import atomic_write_text, envelope, now_iso, read_document
from headsurgeon.models.adapters import HeadRef
from headsurgeon.options import check_value
from headsurgeon.surgery.plan import SurgeryPlan
from headsurgeon.surgery.rules import parse_head

from .drift import ZONES, column_drift, first_reaching, transitions, zone_masks, zone_of, zone_stats
from .inputs import Point, resolve_points


@dataclass
class Comparison:
    """BOS mass and class of every head at each input (``[inputs, layers, heads]``) plus the zone."""

    labels: list[str]
    sources: list[str]
    steps: list[int | None]
    bos_mass: np.ndarray
    classes: np.ndarray
    targets: list[HeadRef] = field(default_factory=list)
    frozen_in_zone: list[HeadRef] = field(default_factory=list)
    threshold: float = 0.05
    model: dict = field(default_factory=dict)
    zone_source: str | None = None
    class_thresholds: dict = field(default_factory=lambda: {"sink": 0.5, "dead": 0.95, "low_entropy": 0.5})  # of the first input
    notes: list[str] = field(default_factory=list)
    created: str = field(default_factory=now_iso)

    # ----- basic views ----------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.bos_mass.shape[1:])

    @property
    def has_zone(self) -> bool:
        return bool(self.targets or self.frozen_in_zone)

    @cached_property
    def masks(self) -> dict[str, np.ndarray]:
        return zone_masks(self.shape, self.targets, self.frozen_in_zone)

    def _index(self, i: int) -> int:
        n = len(self.labels)
        j = i % n if -n <= i < n else None
        if j is None or j == 0:
            raise HeadsurgeonError(f"input index {i} is not a later input (1..{n - 1} or a negative index)")
        return j

    def delta(self, i: int = -1) -> np.ndarray:
        """BOS mass of input ``i`` minus that of the first input, ``[layers, heads]``."""
        return self.bos_mass[self._index(i)] - self.bos_mass[0]

    def zones(self, i: int = -1) -> dict[str, dict]:
        """Per zone: heads, drifting heads, mean |delta| (over all the zone's heads), ..."""
        d = self.delta(i)
        return {z: zone_stats(d, self.masks[z], self.threshold) for z in ZONES}

    def transitions(self, i: int = -1) -> tuple[list[dict], list[dict]]:
        """``(recoveries, iatrogenic collapses)`` from the first input to input ``i``."""
        j = self._index(i)
        return transitions(self.bos_mass[0], self.classes[0], self.bos_mass[j], self.classes[j], self.masks, self.threshold)

    def per_head(self, i: int = -1) -> list[dict]:
        """Every head: zone, BOS mass before and after, delta, classes, drifting or not."""
        j = self._index(i)
        d = self.delta(j)
        L, H = self.shape
        return [
            {"head": str(HeadRef(l, h)), "zone": zone_of(self.masks, l, h), "bos_before": round(float(self.bos_mass[0, l, h]), 6),
             "bos_after": round(float(self.bos_mass[j, l, h]), 6), "delta": round(float(d[l, h]), 6),
             "before": str(self.classes[0, l, h]), "after": str(self.classes[j, l, h]), "drifting": bool(abs(d[l, h]) > self.threshold)}
            for l in range(L) for h in range(H)
        ]

    # ----- over all inputs --------------------------------------------------------------
    def columns(self) -> list[dict]:
        """Drift grouped by head index across layers, at every later input.

        Targets are left out: their change is the surgery itself and would swamp the columns'
        spread among frozen heads (which is what "column propagation" is about).
        """
        include = ~self.masks["targets"]
        per_input = [column_drift(self.delta(j), include, self.threshold) for j in range(1, len(self.labels))]
        rows = []
        for h in range(self.shape[1]):
            means = [None if np.isnan(m[1][h]) else round(float(m[1][h]), 6) for m in per_input]
            rows.append({
                "index": h,
                "heads": int(per_input[0][0][h]),
                "targets": int(self.masks["targets"][:, h].sum()),
                "mean_abs_delta": means,
                "drifting": [int(m[2][h]) for m in per_input],
                # first to last of the later inputs; undefined with only one of them
                "change": None if len(means) < 2 or means[0] is None else round(means[-1] - means[0], 6),
            })
        return rows

    def trajectory(self) -> list[dict]:
        """One row per later input: drifting heads and mean |delta| per zone, transition counts."""
        rows = []
        for j in range(1, len(self.labels)):
            z = self.zones(j)
            rec, iat = self.transitions(j)
            rows.append({
                "label": self.labels[j], "step": self.steps[j],
                "zones": {k: {m: v[m] for m in ("heads", "drifting", "mean_abs_delta", "mean_delta")} for k, v in z.items()},
                "recoveries": len(rec), "iatrogenic": len(iat),
            })
        return rows

    def phenomena(self) -> dict:
        """For outside-zone and frozen in-zone heads: where their mean |delta| first reached half
        its peak over the inputs. Early for outside heads = global redistribution; late for
        in-zone frozen heads = local degradation (SCIENCE.md, "Two phenomena")."""
        traj = self.trajectory()
        out = {}
        for z in ("outside_zone", "frozen_in_zone"):
            values = [r["zones"][z]["mean_abs_delta"] for r in traj]
            k = first_reaching(values) if traj and traj[0]["zones"][z]["heads"] else None
            out[z] = {
                "heads": traj[0]["zones"][z]["heads"] if traj else 0,
                "peak_mean_abs_delta": max(values) if values else 0.0,
                "half_peak_at": None if k is None else traj[k]["label"],
                "half_peak_step": None if k is None else traj[k]["step"],
                "half_peak_position": None if k is None else (k + 1) / len(traj),
            }
        return out

    # ----- JSON -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        rec, iat = self.transitions(-1)
        return {
            **envelope("comparison", created=self.created),
            "model": self.model,
            "settings": {"drift_threshold": self.threshold, "zone_source": self.zone_source, "class_thresholds": self.class_thresholds},
            "notes": self.notes,
            "inputs": [{"label": lab, "source": src, "step": st, "counts": _counts(self.classes[k])}
                       for k, (lab, src, st) in enumerate(zip(self.labels, self.sources, self.steps))],
            "zone": {"targets": [str(h) for h in self.targets], "frozen_in_zone": [str(h) for h in self.frozen_in_zone]},
            "final": {
                "before": self.labels[0], "after": self.labels[-1], "zones": self.zones(-1),
                "recoveries": rec, "iatrogenic": iat,
                "delta": np.round(self.delta(-1), 6).tolist(),
            },
            "trajectory": self.trajectory(),
            "phenomena": self.phenomena(),
            "columns": self.columns(),
            "bos_mass": np.round(self.bos_mass, 6).tolist(),
            "classes": self.classes.tolist(),
        }

    @classmethod
    def from_dict(cls, doc: dict) -> Comparison:
        if doc.get("kind") != "comparison":
            raise HeadsurgeonError(f"this JSON is a '{doc.get('kind')}' document, not a comparison; pass a comparison.json")
        return cls(
            labels=[i["label"] for i in doc["inputs"]], sources=[i["source"] for i in doc["inputs"]],
            steps=[i["step"] for i in doc["inputs"]],
            bos_mass=np.asarray(doc["bos_mass"], dtype=float), classes=np.asarray(doc["classes"], dtype=object),
            targets=[parse_head(h) for h in doc["zone"]["targets"]], frozen_in_zone=[parse_head(h) for h in doc["zone"]["frozen_in_zone"]],
            threshold=doc["settings"]["drift_threshold"], model=doc.get("model", {}), zone_source=doc["settings"].get("zone_source"),
            class_thresholds=doc["settings"].get("class_thresholds", {"sink": 0.5, "dead": 0.95, "low_entropy": 0.5}),
            notes=list(doc.get("notes", [])), created=doc.get("created", ""),
        )

    def save(self, path: str | Path) -> Path:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> Comparison:
        return cls.from_dict(read_document(path, kind="comparison"))


def _counts(classes: np.ndarray) -> dict[str, int]:
    from headsurgeon.diagnosis.classes import count

    return count(classes)


def _plan_from(zone) -> tuple[SurgeryPlan | None, str | None]:
    if zone is None:
        return None, None
    if isinstance(zone, SurgeryPlan):
        return zone, "plan given"
    return SurgeryPlan.load(zone), str(zone)


def _notes(points: list[Point]) -> list[str]:
    """Differences between the inputs' measurement settings that make deltas mix in other causes."""
    notes = []
    ref = points[0].diagnosis
    for p in points[1:]:
        d = p.diagnosis
        if [(q["name"], q.get("tokens")) for q in d.prompts] != [(q["name"], q.get("tokens")) for q in ref.prompts]:
            notes.append(f"'{p.label}' was measured on other prompts than '{points[0].label}': its deltas mix prompt and model changes")
        for key in ("include_first_query", "bos"):
            if d.settings.get(key) != ref.settings.get(key):
                notes.append(f"'{p.label}' used {key}={d.settings.get(key)!r}, '{points[0].label}' {ref.settings.get(key)!r}")
        if d.settings.get("thresholds") != ref.settings.get("thresholds"):
            notes.append(f"'{p.label}' classifies heads with other thresholds than '{points[0].label}'")
    return notes


#: What must agree between two diagnoses for their heads to be the same heads.
SAME_MODEL_KEYS = ("family", "model_type", "num_layers", "num_heads", "num_kv_heads", "hidden_size")


def _check_same_model(points: list[Point]) -> None:
    ref = points[0].diagnosis.model
    for p in points[1:]:
        m = p.diagnosis.model
        diffs = [f"{k} {ref.get(k)} vs {m.get(k)}" for k in SAME_MODEL_KEYS
                 if ref.get(k) is not None and m.get(k) is not None and ref.get(k) != m.get(k)]
        if diffs:
            raise HeadsurgeonError(
                f"{points[0].label} and {p.label} are diagnoses of different models ({ref.get('name')} vs {m.get('name')}: "
                f"{'; '.join(diffs[:3])}); compare diagnoses of one model, or pass --allow-different-models"
            )


def compare(
    inputs: list,
    *,
    zone: SurgeryPlan | str | Path | None = None,
    drift_threshold: float = 0.05,
    labels: list[str] | None = None,
    allow_different_models: bool = False,
) -> Comparison:
    """Compare diagnoses, diagnosis files or surgery run folders (see :func:`.inputs.resolve_points`).

    ``zone``: the plan whose targets and ``frozen_in_zone`` heads define the zones (a
    :class:`SurgeryPlan` or a plan file); by default the plan of the first run folder given,
    else no zone (every head counts as outside). ``drift_threshold``: a head drifts when
    ``|delta| > drift_threshold``. Diagnoses of different models (family or shape; the weights
    may differ, that is what a comparison measures) are refused unless ``allow_different_models``.
    """
    check_value("drift_threshold", drift_threshold, above=0, below=1)
    points, run = resolve_points(list(inputs), labels)
    if not allow_different_models:
        _check_same_model(points)
    shapes = {p.diagnosis.shape for p in points}
    if len(shapes) > 1:
        raise HeadsurgeonError(f"the diagnoses are of models with different shapes {sorted(shapes)}; compare diagnoses of one model")
    plan, source = _plan_from(zone)
    if plan is None and run is not None:
        plan, source = run.plan, f"plan of run {run.run_dir}"
    L, H = points[0].diagnosis.shape
    if plan is not None:
        for h in plan.targets + plan.frozen_in_zone:
            if not (0 <= h.layer < L and 0 <= h.head < H):
                raise HeadsurgeonError(f"zone head {h} is out of range for {L} layers x {H} heads; pass the plan of this model")
    return Comparison(
        labels=[p.label for p in points], sources=[p.source for p in points], steps=[p.step for p in points],
        bos_mass=np.stack([p.diagnosis.bos_mass for p in points]),
        classes=np.stack([p.diagnosis.classes for p in points]).astype(object),
        targets=list(plan.targets) if plan else [], frozen_in_zone=list(plan.frozen_in_zone) if plan else [],
        threshold=float(drift_threshold), model=points[0].diagnosis.model, zone_source=source,
        class_thresholds=dict(points[0].diagnosis.settings["thresholds"]), notes=_notes(points),
    )
