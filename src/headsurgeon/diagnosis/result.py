"""The diagnosis result: a plain object that round-trips through versioned JSON.

JSON layout (schema ``1.x``; documented in ``docs/schema.md``): ``schema_version``,
``package_version``, ``created``, ``kind: "diagnosis"``, ``model`` (name, source, family and
shape), ``settings`` (thresholds, whether query 0 is included, BOS policy, prompt source,
max length, batch size), ``prompts`` (name, domain, tokens, first token), per-head ``[layer][head]``
arrays ``bos_mass``/``entropy``/``local_mass`` (means over prompts) with ``*_std`` (spread over
prompts), ``per_prompt`` (``[prompt][layer][head]`` for each metric), ``classes``, and the derived
``counts``, ``threshold_sweep``, ``columns`` and ``alibi`` sections; ``layers`` (per layer: type
``global``/``local``, sliding window, query rows counted in the BOS means) and, for families with
a learned sink, ``sink_mass`` arrays and ``sinks`` (each head's sink logit).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.io import atomic_write_text, envelope, now_iso, read_document
from headsurgeon.models.adapters import HeadRef
from headsurgeon.precision import probability_tolerance

from .classes import COLLAPSED, LABELS, SWEEP, Thresholds, classify, count
from .metrics import METRICS, SINK_METRIC

#: Prompts shorter than this (tokens) get a warning: BOS mass depends on length.
SHORT_PROMPT = 64


@dataclass
class Diagnosis:
    """Per-head statistics of one model over a prompt set (arrays are ``[layers, heads]``)."""

    model: dict
    settings: dict
    prompts: list[dict]
    per_prompt: dict[str, np.ndarray]  # metric -> [prompts, layers, heads]
    alibi: dict | None = None
    created: str = field(default_factory=now_iso)
    elapsed_seconds: float | None = None
    #: Per layer: ``type`` (global/local), ``window``, ``bos_rows`` (rows counted in BOS means).
    layers: dict | None = None
    #: Learned sinks (gpt-oss): ``logits`` ``[layer][head]``.
    sinks: dict | None = None

    @property
    def metrics(self) -> tuple[str, ...]:
        """The per-head metrics this diagnosis holds (``sink_mass`` only for learned-sink families)."""
        return METRICS + ((SINK_METRIC,) if SINK_METRIC in self.per_prompt else ())

    def __repr__(self) -> str:
        """One line (the arrays would flood a notebook cell): model, shape, prompts and class counts."""
        L, H = self.shape
        counts = ", ".join(f"{k}={v}" for k, v in self.counts().items())
        return f"Diagnosis({self.model.get('name')!r}, {L} layers x {H} heads, {len(self.prompts)} prompts, {counts})"

    # ----- derived views ----------------------------------------------------------------
    def mean(self, metric: str) -> np.ndarray:
        """``[layers, heads]`` mean over prompts of ``metric``: ``"bos_mass"``, ``"entropy"`` (nats) or ``"local_mass"``."""
        if metric not in self.per_prompt:
            raise HeadsurgeonError(f"unknown metric '{metric}'; choose from {', '.join(self.per_prompt)}")
        return self.per_prompt[metric].mean(0)

    def std(self, metric: str) -> np.ndarray:
        """``[layers, heads]`` spread over prompts (sample std, ddof=1; zeros for a single prompt)."""
        x = self.per_prompt[metric]
        return x.std(0, ddof=1) if x.shape[0] > 1 else np.zeros(x.shape[1:])

    @property
    def bos_mass(self) -> np.ndarray:
        return self.mean("bos_mass")

    @property
    def entropy(self) -> np.ndarray:
        return self.mean("entropy")

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(**self.settings["thresholds"])

    @property
    def shape(self) -> tuple[int, int]:
        return self.bos_mass.shape

    @property
    def classes(self) -> np.ndarray:
        return classify(self.bos_mass, self.entropy, self.thresholds)

    def counts(self, thresholds: Thresholds | None = None) -> dict[str, int]:
        return count(classify(self.bos_mass, self.entropy, thresholds or self.thresholds))

    def threshold_sweep(self) -> dict[str, dict[str, int]]:
        """Class counts when only the sink threshold moves (0.4 / 0.5 / 0.6): a bimodal
        distribution gives nearly the same counts."""
        t = self.thresholds
        out = {}
        for s in SWEEP:
            if s < t.dead:
                out[f"{s:.2f}"] = self.counts(Thresholds(sink=s, dead=t.dead, low_entropy=t.low_entropy))
        return out

    def heads(self, *classes: str) -> list[HeadRef]:
        """Heads of the given classes (``"healthy"``, ``"low_entropy"``, ``"bos_sink"``, ``"dead"``),
        in layer then head order; with no class, every head of the model."""
        cls = self.classes
        if not classes:
            L, H = self.shape
            return [HeadRef(l, h) for l in range(L) for h in range(H)]
        unknown = sorted(set(classes) - set(LABELS))
        if unknown:
            raise HeadsurgeonError(f"unknown class {', '.join(unknown)}; choose from {', '.join(LABELS)}")
        return [HeadRef(int(l), int(h)) for l, h in zip(*np.nonzero(np.isin(cls, classes)))]

    def collapsed(self) -> list[HeadRef]:
        """Heads that are BOS-sink or DEAD under this diagnosis's thresholds, in layer then head order."""
        return self.heads(*COLLAPSED)

    def columns(self, band_fraction: float = 0.5, band_ratio: float = 2.0) -> dict:
        """Per head index: how many layers it is collapsed in and its mean BOS mass, and the
        "sick band" by a stated rule (``band_rule``): head index ``h`` belongs to the band when
        it is collapsed in at least ``band_fraction`` of the layers *and* at least ``band_ratio``
        times as often as the other head indices on average. The second condition keeps a model
        whose collapse is spread evenly over its head indices (SmolLM2-135M: 8-14 of 30 layers
        for every index) from being said to have a band; BLOOM's H9-H15 pass both."""
        collapsed = np.isin(self.classes, COLLAPSED)
        per_index = collapsed.sum(0)
        L, H = collapsed.shape
        rate = per_index / L
        band = []
        for h in range(H):
            others = (rate.sum() - rate[h]) / (H - 1) if H > 1 else 0.0
            if rate[h] >= band_fraction and rate[h] >= band_ratio * others:
                band.append(h)
        return {
            "collapsed_layers": per_index.astype(int).tolist(),
            "mean_bos_mass": self.bos_mass.mean(0).round(6).tolist(),
            "band_fraction": band_fraction,
            "band_ratio": band_ratio,
            "band_rule": (f"a head index is in the sick band when it is collapsed in at least {band_fraction:g} of the layers "
                          f"and at least {band_ratio:g} times as often as the other head indices on average"),
            "sick_band": band,
        }

    def by_layer_type(self) -> dict | None:
        """BOS mass per layer type (``local``/``global``) with the layers and query rows counted;
        ``None`` when every layer is global (nothing to split)."""
        if not self.layers or "local" not in self.layers["type"]:
            return None
        out = {}
        types = np.asarray(self.layers["type"])
        bos = self.bos_mass
        collapsed = np.isin(self.classes, COLLAPSED)
        for kind in ("local", "global"):
            idx = np.nonzero(types == kind)[0]
            if idx.size == 0:
                continue
            windows = sorted({self.layers["window"][i] for i in idx if self.layers["window"][i] is not None})
            out[kind] = {
                "layers": idx.astype(int).tolist(),
                "window": windows[0] if len(windows) == 1 else (windows or None),
                "mean_bos_mass": round(float(bos[idx].mean()), 6),
                "collapsed_heads": int(collapsed[idx].sum()),
                "bos_rows": int(sum(self.layers["bos_rows"][i] for i in idx)),
            }
        return out

    def most_collapsed(self, n: int = 5) -> list[tuple[HeadRef, float]]:
        """The ``n`` collapsed heads with the highest BOS mass, highest first (fewer if fewer collapsed)."""
        bos = self.bos_mass
        heads = sorted(self.collapsed(), key=lambda r: -bos[r.layer, r.head])[:n]
        return [(r, float(bos[r.layer, r.head])) for r in heads]

    def notes(self, short_prompt: int = SHORT_PROMPT) -> list[str]:
        """Warnings a reader of the counts needs: BOS mass depends on prompt length (on a short
        prompt every query is close to position 0, so attention there is large even for a
        healthy head), and a single prompt gives no spread."""
        out = []
        lengths = [int(p["tokens"]) for p in self.prompts]
        short = [n for n in lengths if n < short_prompt]
        if short:
            out.append(f"{len(short)} of {len(lengths)} prompts are shorter than {short_prompt} tokens (shortest {min(lengths)}): "
                       "BOS mass depends on prompt length (a query near the start has few other tokens to attend to), so short "
                       "prompts overstate collapse; use prompts of a few hundred tokens")
        if len(lengths) == 1:
            out.append("one prompt only: the spread across prompts cannot be measured")
        return out

    def summary(self) -> dict:
        n = int(np.prod(self.shape))
        counts = self.counts()
        out = {
            "heads": n,
            "counts": counts,
            "collapsed_percent": round(100 * (counts["bos_sink"] + counts["dead"]) / n, 2),
            "max_prompt_spread": float(self.std("bos_mass").max()),
            "mean_prompt_spread": float(self.std("bos_mass").mean()),
        }
        by_type = self.by_layer_type()
        if by_type is not None:
            out["by_layer_type"] = by_type
        if SINK_METRIC in self.per_prompt:
            sink = self.mean(SINK_METRIC)
            out["sink_mass"] = {"mean": round(float(sink.mean()), 6), "max": round(float(sink.max()), 6)}
        attention = (self.model or {}).get("attention") or {}
        if attention.get("decisions"):
            out["family_decisions"] = attention["decisions"]
        if attention.get("warnings"):
            out["warnings"] = attention["warnings"]
        return out

    # ----- JSON -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        def r(a):
            return np.round(np.asarray(a, dtype=float), 6).tolist()

        return {
            **envelope("diagnosis", created=self.created),
            "elapsed_seconds": self.elapsed_seconds,
            "model": self.model,
            "settings": self.settings,
            "prompts": self.prompts,
            **{m: r(self.mean(m)) for m in self.metrics},
            **{f"{m}_std": r(self.std(m)) for m in self.metrics},
            "classes": self.classes.tolist(),
            "summary": self.summary(),
            "threshold_sweep": self.threshold_sweep(),
            "columns": self.columns(),
            "alibi": self.alibi,
            "layers": self.layers,
            "sinks": self.sinks,
            "per_prompt": {m: r(v) for m, v in self.per_prompt.items()},
        }

    @classmethod
    def from_dict(cls, doc: dict) -> Diagnosis:
        if doc.get("kind") != "diagnosis":
            raise HeadsurgeonError(f"this JSON is a '{doc.get('kind')}' document, not a diagnosis; pass a diagnosis.json")
        problem = _diagnosis_problem(doc)
        if problem:
            raise HeadsurgeonError(f"this diagnosis cannot be read: {problem}; re-create it with `headsurgeon diagnose` (or undo the edit)")
        return cls(
            model=doc["model"],
            settings=doc["settings"],
            prompts=doc["prompts"],
            per_prompt={m: np.asarray(v, dtype=float) for m, v in doc["per_prompt"].items()},
            alibi=doc.get("alibi"),
            layers=doc.get("layers"),
            sinks=doc.get("sinks"),
            created=doc.get("created", ""),
            elapsed_seconds=doc.get("elapsed_seconds"),
        )

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Diagnosis:
        """Read a ``diagnosis.json`` written by :meth:`save` or ``headsurgeon diagnose``.

        Values are stored rounded to 6 decimals, so a loaded diagnosis equals the saved one to
        within 5e-7 per value (classes, counts and the sweep are recomputed from those values and
        agree unless a head sits within 5e-7 of a threshold). A foreign or newer-major-version
        file, or a hand-edited one that lost a key or holds values out of range, is a one-line
        :class:`HeadsurgeonError`."""
        doc = read_document(path, kind="diagnosis")
        try:
            return cls.from_dict(doc)
        except HeadsurgeonError as e:
            raise HeadsurgeonError(f"{path}: {e}") from None


def _diagnosis_problem(doc: dict) -> str | None:
    """What makes ``doc`` unusable as a diagnosis (a key gone, a wrong type, arrays of the wrong
    shape or out of range), in words; ``None`` when it is sound. Hand-edited files reach here, so
    every reader gets a sentence instead of a KeyError deep inside a figure."""
    for key, want in (("model", dict), ("settings", dict), ("prompts", list), ("per_prompt", dict)):
        if key not in doc:
            return f"it has no '{key}'"
        if not isinstance(doc[key], want):
            return f"its '{key}' is {type(doc[key]).__name__}, not {want.__name__}"
    model, prompts, per_prompt = doc["model"], doc["prompts"], doc["per_prompt"]
    if not isinstance(model.get("name"), str):
        return "its 'model' has no 'name'"
    if not prompts:
        return "it lists no prompts"
    for i, p in enumerate(prompts):
        if not isinstance(p, dict) or not isinstance(p.get("name"), str):
            return f"prompt {i} has no 'name'"
    # rounding in the dtype the model ran in may push a probability just past 1 (files from before
    # the dtype was recorded were float32)
    tol = probability_tolerance(str(doc["settings"].get("dtype") or "float32"))
    missing = [m for m in METRICS if m not in per_prompt]
    if missing:
        return f"its 'per_prompt' has no '{missing[0]}'"
    for metric, values in per_prompt.items():
        try:
            x = np.asarray(values, dtype=float)
        except (TypeError, ValueError):
            return f"per_prompt '{metric}' is not a [prompt][layer][head] array of numbers"
        if x.ndim != 3 or x.shape[0] != len(prompts):
            return f"per_prompt '{metric}' has shape {list(x.shape)}, not [{len(prompts)} prompts][layers][heads]"
        for key, size in (("num_layers", x.shape[1]), ("num_heads", x.shape[2])):
            if isinstance(model.get(key), int) and model[key] != size:
                return f"per_prompt '{metric}' has {size} {key[4:]}, the model {model[key]}"
        if not np.isfinite(x).all():
            return f"per_prompt '{metric}' holds a value that is not a finite number"
        if metric != "entropy" and ((x < -tol) | (x > 1 + tol)).any():
            return f"per_prompt '{metric}' holds a value outside [0, 1]"
    return None
