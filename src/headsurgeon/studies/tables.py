"""The study's three tables as plain data, rendered by ``html.py`` and ``markdown.py``.

One model per table (header, rows of cells) so the study page and the Markdown notes show the
same rows, columns, numbers and wording: a column or metric added here appears in both, and
neither renderer can drift from the other. A cell is plain text (escaping is the renderer's
job), possibly several lines, marked numeric (right-aligned in HTML) or with a verdict outcome.
"""

from __future__ import annotations

from dataclasses import dataclass

from headsurgeon.formatting import num

from .aggregate import METRIC_LABELS
from .result import StudyResult
from .settings import ARMS
from .stats import HOLDS, INCONCLUSIVE, REVERSED, Stats, Verdict

OUTCOME_WORDS = {HOLDS: "holds", REVERSED: "reversed (the reference arm is better)", INCONCLUSIVE: "inconclusive"}
ARM_METRICS = ("heldout_ppl_best", "heldout_best_vs_stock", "best_step", "best_tokens", "best_epoch", "other_ppl_at_best",
               "other_at_best_vs_stock", "train_ppl_at_best", "train_ppl_best", "train_best_vs_stock", "train_best_step",
               "train_best_epoch", "heldout_ppl_final", "recovery_final", "recollapsed", "ablation_delta_final",
               "ablation_delta_stock", "drift_count", "drift_mean_abs", "stop_step", "final_step", "trainable_parameters",
               "compute_seconds")


# figures that count things (steps, tokens, heads, parameters): whole numbers with separators, not
# "1300.0000" or "1.331e+06"; a mean over seeds that is not whole keeps one decimal
COUNT_METRICS = frozenset({"best_step", "best_tokens", "train_best_step", "recollapsed", "drift_count", "stop_step",
                           "final_step", "trainable_parameters"})


def count_text(x) -> str:
    if x is None:
        return num(None)
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"


@dataclass(frozen=True)
class Cell:
    lines: tuple[str, ...]
    numeric: bool = False
    outcome: str | None = None  # a verdict's outcome (holds / reversed / inconclusive)


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]


def _text(x) -> Cell:
    return Cell((str(x),))


def _num(x, digits: int = 4) -> Cell:
    return Cell((num(x, digits),), numeric=True)


def ci_text(s: Stats) -> str:
    """Mean and its interval (just the mean from one seed)."""
    if s.mean is None:
        return num(None)
    return num(s.mean) if s.n < 2 else f"{num(s.mean)} [{num(s.ci_low)}, {num(s.ci_high)}]"


def _level(study: StudyResult) -> str:
    return f"{study.settings.get('ci_level', 0.95):.0%}"


def verdict_table(study: StudyResult, verdicts: list[Verdict]) -> Table:
    """One row per verdict: the claim, its arms and metric, both means, the paired difference, the outcome."""
    header = ("claim", "arms", "metric", "arm mean", "reference mean", f"difference, favourable > 0 [{_level(study)} CI]",
              "relative", "d_z", "seeds", "verdict")
    rows = tuple(
        (_text(v.text), _text(f"{v.arm} vs {v.reference}"), _text(f"{METRIC_LABELS.get(v.metric, v.metric)} ({v.better} is better)"),
         _num(v.arm_mean), _num(v.reference_mean), Cell((ci_text(v.difference),), numeric=True),
         Cell(("" if v.relative is None else f"{100 * v.relative:+.1f}%",), numeric=True), _num(v.d_z, 2),
         _num(len(v.seeds)), Cell((OUTCOME_WORDS[v.outcome],), outcome=v.outcome))
        for v in verdicts
    )
    return Table(header, rows)


def stopping_table(study: StudyResult) -> Table:
    """Per seed and arm: the best point (step, tokens, epoch), where and why the arm stopped, the seed's budget."""
    header = ("seed", "arm", "best step", "tokens", "epoch", "held-out PPL there", "stopped on its own at", "why", "trained to",
              "seed's budget (steps, tokens)")
    rows = []
    for r in study.runs:
        st = r.get("stopping")
        if not st:
            continue
        b = study.budgets.get(str(r["seed"]), {})
        why = st["reason"] if st["reason"] != "budget" else "patience, then continued to the budget"
        budget = "n/a" if "steps" not in b else f"{num(b['steps'])}, {num(b.get('tokens'))}"
        rows.append((_text(r["seed"]), _text(r["arm"]), _num(st["best_step"]), _num(st["best_tokens"]), _num(st["best_epoch"]),
                     _num(r["scalars"].get("heldout_ppl_best")), _num(st["step"]), _text(why), _num(st["final_step"]),
                     Cell((budget,), numeric=True)))
    return Table(header, tuple(rows))


def arm_table(study: StudyResult, metrics: tuple[str, ...] = ARM_METRICS) -> Table:
    """Per figure (rows) and arm (columns): mean ± std over seeds and the bootstrap interval."""
    arms = [a for a in ARMS if a in study.arms]
    rows = []
    for m in metrics:
        cells = [_text(METRIC_LABELS.get(m, m))]
        mean_text, spread_text = (count_text, count_text) if m in COUNT_METRICS else (num, lambda x: num(x, 2))
        for a in arms:
            s = study.arms[a][m]
            if s.mean is None or s.n < 2:
                cells.append(Cell((mean_text(s.mean),), numeric=True))
            else:
                cells.append(Cell((f"{mean_text(s.mean)} ± {spread_text(s.std)}", f"[{mean_text(s.ci_low)}, {mean_text(s.ci_high)}]"),
                                  numeric=True))
        rows.append(tuple(cells))
    return Table(("figure", *arms), tuple(rows))
