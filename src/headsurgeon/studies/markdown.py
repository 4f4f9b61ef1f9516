"""The study's tables as Markdown (for READMEs and notes).

The tables are the ones the HTML section shows (:mod:`headsurgeon.studies.tables`), so the
numbers, columns and wording are the same; only primary metrics in the verdict table.
"""

from __future__ import annotations

from . import tables
from .result import StudyResult
from .stats import HOLDS, REVERSED


def _cell(c: tables.Cell) -> str:
    text = " ".join(c.lines).replace("|", "\\|")  # a pipe inside a cell would end it
    return f"**{text}**" if c.outcome in (HOLDS, REVERSED) else text


def render_table(table: tables.Table) -> str:
    """A :class:`~headsurgeon.studies.tables.Table` as a Markdown table (verdicts that hold or reverse in bold)."""
    rows = ["| " + " | ".join(h.replace("|", "\\|") for h in table.header) + " |", "|" + "---|" * len(table.header)]
    rows += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join(rows)


def verdict_table(study: StudyResult, *, primary_only: bool = True) -> str:
    return render_table(tables.verdict_table(study, [v for v in study.verdicts if v.primary or not primary_only]))


def stopping_table(study: StudyResult) -> str:
    """Per seed and arm: where the best point was, where and why the arm stopped, the seed's budget."""
    return render_table(tables.stopping_table(study))


def arm_table(study: StudyResult, metrics: tuple[str, ...] = tables.ARM_METRICS) -> str:
    """Mean ± std [bootstrap CI] over seeds per arm (columns) and figure (rows)."""
    return render_table(tables.arm_table(study, metrics))


def study_markdown(study: StudyResult) -> str:
    """The whole study for a README or note: verdicts, per-arm figures, where each arm peaked and stopped."""
    level = f"{study.settings.get('ci_level', 0.95):.0%}"
    parts = [f"Verdicts ({len({r['seed'] for r in study.runs})} seeds, status {study.status}):", verdict_table(study), "",
             f"Per arm (mean ± std [{level} bootstrap interval] over seeds):", arm_table(study)]
    if any(r.get("stopping") for r in study.runs):
        parts += ["", "Where each arm peaked and why it stopped:", stopping_table(study)]
    return "\n".join(parts) + "\n"
