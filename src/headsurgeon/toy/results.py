"""Result objects of the toy lab and their files (versioned JSON + CSV, atomic writes).

``toy_run.json`` keys (schema 1.0):
  schema_version, package_version, created (UTC ISO-8601), kind ("toy_run"),
  config (every ToyConfig field), task (alphabet, triggers, BOS id, text source),
  summary (final headline numbers + verdicts, see ``dynamics.summarize``),
  timing (steps/s, ms per generated batch vs per optimiser step),
  dynamics ({"step": [...], "<metric>": [...]}, definitions in ``dynamics.py``).
``dynamics.csv`` holds the same dynamics, one row per logged step.
``toy_compare.json`` (kind "toy_compare") holds the base config and one summary per variant.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from headsurgeon.io import atomic_write_text, envelope, read_document
from headsurgeon.toy.config import ToyConfig


def _clean(value: Any) -> Any:
    """JSON has no NaN: write missing measurements (e.g. no trigger in a batch) as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


@dataclass
class ToyRunResult:
    """One training run: config, task, logged dynamics, final summary, timing, files."""

    config: ToyConfig
    task: dict[str, Any]
    dynamics: dict[str, list[float]]  # "step" plus one list per metric, aligned
    summary: dict[str, Any]
    timing: dict[str, float]
    files: dict[str, str] = field(default_factory=dict)
    model: Any = None  # the trained ToyTransformer (not serialised into JSON)

    @property
    def final(self) -> dict[str, float]:
        """The last logged measurement row."""
        return {k: v[-1] for k, v in self.dynamics.items()}

    def to_json(self) -> dict[str, Any]:
        return _clean({**envelope("toy_run"), "config": self.config.to_dict(), "task": self.task,
                       "summary": self.summary, "timing": self.timing, "dynamics": self.dynamics})

    def write(self, out_dir: str | Path) -> dict[str, str]:
        """Write ``toy_run.json`` and ``dynamics.csv`` into ``out_dir``; returns their paths."""
        out = Path(out_dir)
        js, cs = out / "toy_run.json", out / "dynamics.csv"
        atomic_write_text(js, json.dumps(self.to_json(), indent=1) + "\n")
        atomic_write_text(cs, dynamics_csv(self.dynamics))
        self.files.update({"json": str(js), "csv": str(cs)})
        return {"json": str(js), "csv": str(cs)}


def dynamics_csv(dynamics: dict[str, list[float]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    names = list(dynamics)
    w.writerow(names)
    for i in range(len(dynamics["step"])):
        w.writerow([dynamics[n][i] for n in names])
    return buf.getvalue()


def load_toy_run(path: str | Path) -> dict[str, Any]:
    """Read a ``toy_run.json`` (or its directory), refusing another kind or schema major version."""
    p = Path(path)
    return read_document(p / "toy_run.json" if p.is_dir() else p, kind="toy_run")


@dataclass
class ToyCompareResult:
    """The same base config trained as several variants (softmax+AdamW, ReLU, SGD)."""

    base: ToyConfig
    runs: dict[str, ToyRunResult]
    files: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return _clean({
            **envelope("toy_compare"),
            "config": self.base.to_dict(),
            "variants": {
                name: {"changes": changed_fields(self.base, r.config), "summary": r.summary,
                       "timing": r.timing, "files": r.files}
                for name, r in self.runs.items()
            },
        })

    def write(self, out_dir: str | Path) -> str:
        p = Path(out_dir) / "toy_compare.json"
        atomic_write_text(p, json.dumps(self.to_json(), indent=1) + "\n")
        self.files["json"] = str(p)
        return str(p)


def changed_fields(base: ToyConfig, other: ToyConfig) -> dict[str, Any]:
    a, b = base.to_dict(), other.to_dict()
    return {k: b[k] for k in a if a[k] != b[k]}


def _yn(flag: bool) -> str:
    return "yes" if flag else "no"


def _speed(steps_per_s: float) -> str:
    return f"{steps_per_s:.1f} steps/s" if steps_per_s >= 1 else f"{1 / steps_per_s:.1f} s/step"


def run_note(run: ToyRunResult, *, title: str = "toy run") -> list[str]:
    """The closing note of a run: speed, then the reproduced numbers with their verdicts.
    Numbers are means over the rows logged in the last 10% of steps."""
    t, s, c = run.timing, run.summary, run.config
    v, th = s["verdicts"], s["thresholds"]
    res = "  ".join(f"L{k} {r:.2f}" for k, r in s["residual_ratio_by_layer"].items())
    return [
        f"{title}: {c.steps} steps in {t['wall_s']:.1f} s = {_speed(t['steps_per_s'])} "
        f"(generation {t['generation_ms_per_batch']:.2f} ms/batch = "
        f"{100 * t['generation_fraction']:.0f}% of generation+step; step {t['step_ms']:.2f} ms)",
        f"copy head {s['copy_head']}, means over the last 10% of steps; "
        f"thresholds: sink > {th['sink']}, copy > {th['copy']}, "
        f"drain < {th['drain']}, peak > {th['peak']}",
        f"  attention on BOS, non-trigger positions   {s['bos_attn_nontrigger']:.3f} "
        f"(share {s['bos_share_nontrigger']:.3f})   sink: {_yn(v['sink'])}",
        f"  attention on copy source, trigger pos.    {s['copy_attn_trigger']:.3f} "
        f"(share {s['copy_share_trigger']:.3f})   copy: {_yn(v['copy_at_triggers'])}",
        f"  attention on BOS, trigger positions       {s['bos_attn_trigger']:.3f}",
        f"  BOS value norm / others                   {s['value_norm_ratio']:.3f}   drain: {_yn(v['drain'])}",
        f"  BOS residual norm / others by layer       {res}   peak: {_yn(v['peak'])}",
        f"  loss trigger / non-trigger (nats)         {s['loss_trigger']:.3f} / {s['loss_nontrigger']:.3f}",
    ]


def compare_note(result: ToyCompareResult, *, title: str = "toy compare") -> list[str]:
    """A variants-by-metrics table: the closing note of ``toy compare``."""
    names = list(result.runs)
    rows = [
        ("speed", lambda r: _speed(r.timing["steps_per_s"])),
        ("copy head", lambda r: r.summary["copy_head"]),
        ("BOS attn, non-trigger", lambda r: f"{r.summary['bos_attn_nontrigger']:.3f}"),
        ("copy attn, trigger", lambda r: f"{r.summary['copy_attn_trigger']:.3f}"),
        ("copy share, trigger", lambda r: f"{r.summary['copy_share_trigger']:.3f}"),
        ("BOS value norm ratio", lambda r: f"{r.summary['value_norm_ratio']:.3f}"),
        ("max BOS residual ratio", lambda r: f"{r.summary['residual_peak_ratio']:.2f} "
                                             f"(L{r.summary['residual_peak_layer']})"),
        ("loss trigger", lambda r: f"{r.summary['loss_trigger']:.3f}"),
        ("loss non-trigger", lambda r: f"{r.summary['loss_nontrigger']:.3f}"),
        ("sink/copy/drain/peak", lambda r: "/".join(
            _yn(r.summary["verdicts"][k]) for k in ("sink", "copy_at_triggers", "drain", "peak"))),
    ]
    width = max(14, *(len(n) for n in names))
    lines = [f"{title} ({result.base.steps} steps each)",
             " " * 24 + "".join(f"{n:>{width + 2}}" for n in names)]
    for label, get in rows:
        lines.append(f"{label:24s}" + "".join(f"{get(result.runs[n]):>{width + 2}}" for n in names))
    return lines
