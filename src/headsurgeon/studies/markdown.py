"""The verdict table and per-arm headline numbers as Markdown (for READMEs and notes).

Same numbers and wording as the HTML section; only primary metrics in the verdict table.
"""

from __future__ import annotations

from headsurgeon.formatting import num

from .aggregate import METRIC_LABELS
from .result import StudyResult
from .settings import ARMS
from .stats import Stats

_WORDS = {"holds": "**holds**", "reversed": "**reversed** (the reference arm is better)", "inconclusive": "inconclusive"}
HEADLINE = ("heldout_ppl_best", "heldout_best_vs_stock", "best_step", "best_tokens", "best_epoch", "other_ppl_at_best",
            "other_at_best_vs_stock", "train_ppl_at_best", "train_ppl_best", "train_best_vs_stock", "train_best_step", "train_best_epoch",
            "recovery_final", "recollapsed", "ablation_delta_final", "ablation_delta_stock", "drift_count", "drift_mean_abs",
            "stop_step", "final_step", "trainable_parameters", "compute_seconds")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # a pipe inside a cell would end it


def _ci(s: Stats) -> str:
    if s.mean is None:
        return num(None)
    return num(s.mean) if s.n < 2 else f"{num(s.mean)} [{num(s.ci_low)}, {num(s.ci_high)}]"


def verdict_table(study: StudyResult, *, primary_only: bool = True) -> str:
    rows = ["| claim | arms | metric | arm | reference | difference (favourable > 0) [95% CI] | relative | d_z | seeds | verdict |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for v in study.verdicts:
        if primary_only and not v.primary:
            continue
        rel = "" if v.relative is None else f"{100 * v.relative:+.1f}%"
        dz = "n/a" if v.d_z is None else f"{v.d_z:.2f}"
        rows.append(f"| {v.text} | {v.arm} vs {v.reference} | {_cell(METRIC_LABELS.get(v.metric, v.metric))} ({v.better} is better) | "
                    f"{num(v.arm_mean)} | {num(v.reference_mean)} | {_ci(v.difference)} | {rel} | {dz} | {len(v.seeds)} | {_WORDS[v.outcome]} |")
    return "\n".join(rows)


def stopping_table(study: StudyResult) -> str:
    """Per seed and arm: where the best point was, where and why the arm stopped, the seed's budget."""
    rows = ["| seed | arm | best point: step (tokens, epoch) | held-out PPL there | stopped on its own at | why | trained to | budget (steps, tokens) |",
            "|---|---|---|---|---|---|---|---|"]
    for r in study.runs:
        st = r.get("stopping")
        if not st:
            continue
        b = study.budgets.get(str(r["seed"]), {})
        why = st["reason"] if st["reason"] != "budget" else "patience, then continued to the budget"
        rows.append(f"| {r['seed']} | {r['arm']} | {st['best_step']} ({st['best_tokens']:,}, {num(st['best_epoch'])}) | "
                    f"{num(r['scalars'].get('heldout_ppl_best'))} | {st['step']} | {why} | {st['final_step']} | "
                    f"{b.get('steps', 'n/a')}, {b.get('tokens', 0):,} |")
    return "\n".join(rows)


def arm_table(study: StudyResult, metrics: tuple[str, ...] = HEADLINE) -> str:
    """Mean [95% CI] over seeds per arm (columns) and figure (rows)."""
    arms = [a for a in ARMS if a in study.arms]
    rows = ["| figure | " + " | ".join(arms) + " |", "|---|" + "---|" * len(arms)]
    for m in metrics:
        rows.append(f"| {_cell(METRIC_LABELS.get(m, m))} | " + " | ".join(_ci(study.arms[a][m]) for a in arms) + " |")
    return "\n".join(rows)


def study_markdown(study: StudyResult) -> str:
    """The whole study for a README or note: verdicts, per-arm figures, where each arm peaked and stopped."""
    parts = [f"Verdicts ({len({r['seed'] for r in study.runs})} seeds, status {study.status}):", verdict_table(study), "",
             "Per arm (mean [95% bootstrap interval] over seeds):", arm_table(study)]
    if any(r.get("stopping") for r in study.runs):
        parts += ["", "Where each arm peaked and why it stopped:", stopping_table(study)]
    return "\n".join(parts) + "\n"
