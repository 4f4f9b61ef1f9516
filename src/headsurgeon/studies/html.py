"""The study as HTML: a self-contained fragment for the run report, and a standalone page.

:func:`study_html_section` returns one ``<section>`` with its own scoped styles and the figures
embedded as base64 PNGs, so the report can paste it anywhere; :func:`write_study_html` wraps it
in a page (``headsurgeon study`` writes ``OUT/study.html``) and saves the PNGs beside it.
"""

from __future__ import annotations

from pathlib import Path

from headsurgeon.formatting import esc, img
from headsurgeon.io import atomic_write_text

from .figures import render_figures, save_figures
from .result import StudyResult
from .settings import ARM_LABELS, ARMS
from .tables import Cell, Table, arm_table, stopping_table, verdict_table

_STYLE = """
.hs-study{font-family:system-ui,sans-serif;font-size:14px;line-height:1.4;color:#222}
.hs-study table{border-collapse:collapse;margin:.6em 0 1.2em}
.hs-study th,.hs-study td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
.hs-study th{background:#f3f3f3}
.hs-study td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.hs-study .holds{background:#d9f2d9;font-weight:600}
.hs-study .reversed{background:#f9d6d5;font-weight:600}
.hs-study .inconclusive{background:#f3f0d7}
.hs-study img{max-width:100%;border:1px solid #ddd;margin:.4em 0}
.hs-study .note{color:#555;font-size:13px}
"""


def render_table(table: Table) -> str:
    """A :class:`~headsurgeon.studies.tables.Table` as HTML: numbers right-aligned, verdicts coloured by outcome."""
    def cell(c: Cell) -> str:
        cls = f" class='{c.outcome}'" if c.outcome else (" class=num" if c.numeric else "")
        return f"<td{cls}>{'<br>'.join(esc(x) for x in c.lines)}</td>"

    head = "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in table.header) + "</tr>"
    return f"<table>{head}{''.join('<tr>' + ''.join(cell(c) for c in row) + '</tr>' for row in table.rows)}</table>"


def _settings_text(study: StudyResult) -> str:
    s, t = study.settings, study.settings["training"]
    tokens = t["seq_len"] * t["batch_size"] * t["grad_accum"]
    seeds = ", ".join(str(x) for x in s["seeds"])
    lines = [
        f"Model <b>{esc(str(study.model.get('name')))}</b> ({study.model.get('num_layers')} layers x {study.model.get('num_heads')} heads); "
        f"seeds {seeds}; preset <code>{esc(str(s.get('preset')))}</code>.",
        f"Budget per training run: {'at most ' if t.get('patience') else ''}{t['max_steps']} optimizer steps x {tokens} tokens (sequence length {t['seq_len']}, "
        f"batch {t['batch_size']} x {t['grad_accum']} accumulation), AdamW lr {t['lr']}, weight decay {t['weight_decay']}, "
        f"warmup {t['warmup_fraction']:.0%} then cosine, {t['precision']}; training text <code>{esc(str(t['corpus']))}</code>, "
        f"other distribution <code>{esc(str(t['other_corpus']))}</code>; evaluation every {t['eval_every']} steps on "
        f"{t['eval_sequences']} sequences per set."
        + ("" if not t.get("patience") else
           f" Early stopping: an arm stops after {t['patience']} evaluations without a better held-out perplexity (or at the cap of "
           f"{t['max_steps']} steps, over which the learning-rate schedule is defined); then every arm of a seed that stopped earlier "
           f"is continued to the largest number of steps any arm of that seed needed, so all arms of a seed see the same tokens."),
        f"Targets ({len(study.heads.get('targets', []))}, rule <code>{esc(s['target_rule'])}</code>): {esc(', '.join(study.heads.get('targets', [])))}. "
        f"Extended arm adds column(s) {esc(str(study.heads.get('extended_columns')))} ({len(study.heads.get('extended', []))} heads in all).",
    ]
    if study.lora:
        lo = study.lora
        lines.append(f"Matched LoRA: rank {lo['rank']} (alpha {lo['alpha']:g}) on {len(lo['modules'])} projections; "
                     f"{lo['lora_parameters']:,} trainable parameters vs {lo['surgery_parameters']:,} for surgery (ratio {lo['ratio']:.3f}).")
    return "".join(f"<p>{x}</p>" for x in lines)


def study_html_section(study: StudyResult, pngs: dict[str, bytes] | None = None, *, heading: bool = True) -> str:
    """A self-contained HTML fragment (scoped styles, base64 figures) presenting ``study``.

    ``heading=False`` leaves out the ``<h2>`` for a page that titles its sections itself (the run report)."""
    pngs = pngs or render_figures(study)
    imgs = "".join(img(data, name) for name, data in pngs.items())
    primary = [v for v in study.verdicts if v.primary]
    secondary = [v for v in study.verdicts if not v.primary]
    status = "" if study.status == "finished" else f"<p><b>Status: {esc(study.status)}</b> ({len(study.runs)} runs so far).</p>"
    level = study.settings.get("ci_level", 0.95)
    return f"""<section class="hs-study"><style>{_STYLE}</style>
{"<h2>Controlled study: does surgery beat its controls?</h2>" if heading else ""}
{status}{_settings_text(study)}
<h3>Verdicts</h3>
{render_table(verdict_table(study, primary)) if primary else '<p>No claim can be tested: it needs both of its arms.</p>'}
<p class=note>"Beats" means: the {level:.0%} percentile-bootstrap interval of the mean difference between the two arms,
paired by seed (same held-out split, data order and initialisation), lies entirely on the favourable side of 0; entirely on
the other side is "reversed"; otherwise "inconclusive". Recovery is the fraction of the targets classed healthy at the last
evaluation; a freshly re-initialised head is healthy before any training, so for the surgery arm it measures whether the heads
<i>stayed</i> healthy, and the ablation row says whether they do something. With 3 seeds the interval is close to the range of
the seeds, so "holds" amounts to "every seed agrees": read it as a consistent effect on this model and budget, not a
significance test.</p>
<details><summary>Secondary metrics for the same claims</summary>{render_table(verdict_table(study, secondary))}</details>
<h3>Where each arm peaked and why it stopped</h3>
{render_table(stopping_table(study))}
<h3>Per arm (mean ± std over seeds, [{level:.0%} bootstrap CI])</h3>
{render_table(arm_table(study))}
<p class=note>Arms: {esc('; '.join(f'{a}: {ARM_LABELS[a]}' for a in ARMS if a in study.arms))}.
Best point = the evaluation with the lowest held-out perplexity (step 0 included). Drift: untouched heads whose BOS mass moved by more
than {study.settings.get('drift_threshold')} from stock.</p>
<h3>Figures</h3>{imgs}
</section>"""


def write_study_html(study: StudyResult, path: str | Path, *, figures_dir: str | Path | None = None) -> Path:
    """Write ``study.html`` (a whole page around :func:`study_html_section`); PNGs into ``figures_dir`` too."""
    pngs = render_figures(study)
    if figures_dir is not None:
        save_figures(study, figures_dir, pngs)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>headsurgeon study: {esc(str(study.model.get('name')))}</title>"
            f"</head><body style='max-width:1200px;margin:1em auto'>{study_html_section(study, pngs)}</body></html>")
    atomic_write_text(path, page)
    return Path(path)
