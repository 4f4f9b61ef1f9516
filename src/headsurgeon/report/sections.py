"""The report's sections, each a function of ``report.json`` data (and the figures) to HTML.

Everything shown here is read from the data dict, so the HTML never holds a number that the
JSON beside it lacks.
"""

from __future__ import annotations

import re

from headsurgeon.diagnosis.classes import LABELS
from headsurgeon.evaluation.drift import ZONE_LABELS, ZONES
from headsurgeon.evaluation.trajectory import SET_LABELS
from headsurgeon.formatting import card, esc, figure, kv_table, note, num, pct, table


def _cls(name) -> str:
    """A class as the reader sees it everywhere in the report: BOS-sink, DEAD, low-entropy, healthy."""
    return esc(LABELS.get(name, name))


def _lr(x) -> str:
    """Learning rates in scientific notation: 1e-3 decays to 0 and fixed decimals showed 0.000000."""
    return "–" if x is None else ("0" if x == 0 else f"{x:.2e}")


def _fig(figs: dict, name: str) -> str:
    return figure(name, *figs[name]) if name in figs else ""


def _signed(x, digits: int) -> str:
    if x is None:
        return "–"
    if x == 0:
        return "0"
    return f"{x:+,d}" if isinstance(x, int) else f"{x:+.{digits}f}"


def _headline_table(s: dict) -> str:
    """Stock, each repaired checkpoint, and each change (absolute and percent), coloured by direction."""
    heads = ["headline figure", "stock"]
    for p in s["compared"]:
        heads += [f"{p['key']} (step {p['step']})", "change"]
    rows = []
    for r in s["rows"]:
        digits = 0 if r["key"] in ("targets_healthy", "collapsed_heads") else 3
        cells = [esc(r["label"]), num(r["stock"], digits)]
        if r.get("missing"):
            cells.append(f"<span class='muted'>{esc(r['missing'])}</span>")
            cells += [""] * (2 * len(s["compared"]) - 1)
        for p in r["points"]:
            cls = {"better": "ok", "worse": "bad"}.get(p["verdict"], "")
            pct_text = "" if p["change_percent"] is None or p["change"] == 0 else f" ({p['change_percent']:+.1f}%)"
            word = f", {p['verdict']}" if p["verdict"] else ""
            cells += [num(p["value"], digits),
                      f"<span class='{cls}'>{_signed(p['change'], digits)}{pct_text}{word}</span>" if p["change"] is not None else "–"]
        rows.append(cells)
    return table(heads, rows, numeric=set(range(1, len(heads))), cls="headline")


def _cost_line(s: dict, inv: dict | None) -> str:
    c = s["cost"]
    parts = [f"{num(c['steps'])} optimizer steps", f"{num(c['tokens'])} training tokens"]
    if c["train_seconds"] is not None:
        parts.append(f"{num(c['train_seconds'], 0)} s of training")
    if c["trainable_parameters"] is not None:
        parts.append(f"{num(c['trainable_parameters'])} trainable parameters")
    if c["outside_zone_heads"]:
        parts.append(f"{num(c['outside_zone_drifting'])} of {num(c['outside_zone_heads'])} heads outside the surgical zone drifted")
    if c["iatrogenic"] is not None:
        parts.append(f"{num(c['iatrogenic'])} heads newly collapsed")
    held = "held" if inv and inv.get("held") else ("VIOLATED" if inv else "not checked yet")
    parts.append(f"frozen weights bit-identical: <b class='{'ok' if inv and inv.get('held') else 'bad'}'>{held}</b>")
    return "<p><b>Cost:</b> " + "; ".join(parts) + ".</p>"


def summary_block(d: dict) -> str:
    """Did it work, on what, at what cost, how sure: the first thing on the page."""
    s = d["summary"]
    inv = (d["run"].get("invariant") or {}).get("final")
    return (f'<div id="summary"><p class="verdict">{esc(s["what_happened"])}</p>' + _headline_table(s) + _cost_line(s, inv)
            + f'<p class="limits"><b>How sure:</b> {esc(s["what_it_cannot_show"])}</p></div>')


def header(d: dict) -> str:
    run, m = d["run"], d["run"].get("model") or {}
    out = run.get("outcome") or {}
    timing = run.get("timing") or {}
    cards = [card(esc(", ".join(out.get("recollapsed_targets") or []) or "none") if out else "–", "targets re-collapsed during the run")]
    if timing:
        cards.append(card(num(timing.get("tokens_per_second"), 1), "training tokens per second"))
    notes = ("<h3>Notes on this run</h3>" + "".join(note(n) for n in d["notes"])) if d["notes"] else ""
    return (f"<h1>Surgery report: {esc(m.get('name'))}</h1>"
            f'<div class="muted">{esc(m.get("family"))}, {num(m.get("num_layers"))} layers x {num(m.get("num_heads"))} heads '
            f'({num(m.get("num_kv_heads"))} KV heads) · run {esc(run["dir"])} · status <b>{esc(run.get("status"))}</b> · '
            f'report made {esc(d["created"])} by headsurgeon {esc(d["package_version"])}</div>'
            + summary_block(d) + f'<div class="cards">{"".join(cards)}</div>{notes}')


def plan_section(d: dict) -> str:
    plan = d["run"].get("plan") or {}
    comp = d["comparison"]
    by_head = {r["head"]: r for r in _per_head(comp)} if comp else {}
    rows = []
    for h in (comp or {}).get("zone", {}).get("targets", []):
        r = by_head.get(h, {})
        rows.append([esc(h), esc(plan.get("reasons", {}).get(h, "")), num(r.get("bos_before")), num(r.get("bos_after")), _cls(r.get("after"))])
    frozen = ", ".join((comp or {}).get("zone", {}).get("frozen_in_zone", [])) or "none"
    after = comp["inputs"][-1]["label"] if comp else "last"
    return (f"<p>Rules: {esc('; '.join(plan.get('rules', [])))} · GQA mode <b>{esc(plan.get('gqa_mode'))}</b> · "
            f"{num(plan.get('n_targets'))} targets · frozen inside the zone: {esc(frozen)}</p>"
            + table(["target", "why", "BOS mass (stock)", f"BOS mass ({after})", f"class ({after})"], rows, numeric={2, 3}))


def _per_head(comp: dict) -> list[dict]:
    """Per-head rows of the final comparison, from the stored arrays."""
    bos, cls, delta = comp["bos_mass"], comp["classes"], comp["final"]["delta"]
    return [{"head": f"L{l}H{h}", "bos_before": bos[0][l][h], "bos_after": bos[-1][l][h], "delta": delta[l][h], "after": cls[-1][l][h]}
            for l in range(len(bos[0])) for h in range(len(bos[0][0]))]


def perplexity_section(d: dict, figs: dict) -> str:
    p = d["perplexity"]
    sets = p["sets"]
    pts = [[esc(k), num(v.get("step"))] + [num(v.get(s), 3) for s in sets] for k, v in p["points"].items()]
    hist = [[num(r["step"]), num(r.get("epoch"), 2), num(r.get("tokens")), num(r.get("train_loss"), 4), _lr(r.get("lr"))]
            + [num(r.get(f"{s}_ppl"), 3) for s in sets]
            + [num(r.get("targets_healthy")), esc(", ".join(r.get("targets_collapsed", [])))] for r in d["history"]]
    best = p.get("best")
    return (_fig(figs, "perplexity")
            + (f"<p>Best checkpoint by <b>{esc(best['metric'])}</b>: step {num(best['step'])} ({num(best['value'], 3)}).</p>" if best else "")
            + table(["point", "step"] + [SET_LABELS[s] for s in sets], pts, numeric=set(range(1, 2 + len(sets))))
            + "<h3>Every evaluation</h3>"
            + table(["step", "epoch", "tokens", "train loss", "lr"] + [f"{s} ppl" for s in sets] + ["targets healthy", "targets collapsed"],
                    hist, numeric=set(range(0, 6 + len(sets)))))


def topology_section(d: dict, figs: dict) -> str:
    comp = d["comparison"]
    if not comp:
        return ""
    rows = [[esc(i["label"]), num(i["step"])] + [num(i["counts"][k]) for k in ("healthy", "low_entropy", "bos_sink", "dead")]
            for i in comp["inputs"]]
    return (_fig(figs, "topology") + _fig(figs, "histogram")
            + table(["diagnosis", "step", "healthy", "low-entropy", "BOS-sink", "DEAD"], rows, numeric={1, 2, 3, 4, 5}))


def _zone_rows(zones: dict) -> list[list]:
    return [[esc(ZONE_LABELS[z]), num(v["heads"]), num(v["drifting"]), pct(v["drifting_fraction"]), num(v["mean_abs_delta"]),
             num(v["mean_delta"]), num(v["max_abs_delta"])] for z, v in zones.items()]


def _transition_rows(rows: list[dict]) -> list[list]:
    return [[esc(r["head"]), esc(ZONE_LABELS[r["zone"]]), _cls(r["before"]), _cls(r["after"]), num(r["bos_before"]), num(r["bos_after"]),
             num(r["delta"]), "drifting" if r["drifting"] else "borderline (moved less than the drift threshold)"] for r in rows]


def _transitions(title: str, rows: list[dict]) -> str:
    heads_t = ["head", "zone", "class before", "class after", "BOS mass before", "BOS mass after", "delta", "moved"]
    small = sum(not r["drifting"] for r in rows)
    extra = f", {small} of them borderline" if small else ""
    return (f"<h3>{esc(title)} ({len(rows)}{extra})</h3>"
            + (table(heads_t, _transition_rows(rows), numeric={4, 5, 6}) if rows else "<p>none</p>"))


def drift_section(d: dict, figs: dict) -> str:
    comp = d["comparison"]
    if not comp:
        return ""
    f = comp["final"]
    thr = comp["settings"]["drift_threshold"]
    drifters = "".join(
        f"<p><b>{esc(ZONE_LABELS[z])}</b>: " + (esc(", ".join(f"{h['head']} ({h['delta']:+.4f})" for h in v["drifting_heads"])) or "none") + "</p>"
        for z, v in f["zones"].items() if v["heads"])
    return (f"<p>{esc(f['after'])} against {esc(f['before'])}; a head drifts when |delta BOS mass| &gt; {num(thr, 3)}. "
            "Mean |delta| is over all heads of a zone.</p>"
            + table(["zone", "heads", "drifting", "share", "mean |delta|", "mean delta", "max |delta|"], _zone_rows(f["zones"]),
                    numeric={1, 2, 3, 4, 5, 6})
            + _fig(figs, "drift")
            + _transitions("Recoveries: collapsed before, not collapsed after", f["recoveries"])
            + _transitions("Iatrogenic collapses: not collapsed before, collapsed after", f["iatrogenic"])
            + "<h3>Drifting heads, largest change first</h3>" + drifters)


def trajectory_section(d: dict, figs: dict) -> str:
    comp = d["comparison"]
    if not comp or len(comp["trajectory"]) < 2:
        return ""
    zs = [z for z in ZONES if comp["trajectory"][0]["zones"][z]["heads"]]
    rows = [[esc(r["label"]), num(r["step"])]
            + [x for z in zs for x in (num(r["zones"][z]["drifting"]), num(r["zones"][z]["mean_abs_delta"]))]
            + [num(r["recoveries"]), num(r["iatrogenic"])] for r in comp["trajectory"]]
    headers = ["evaluation", "step"] + [x for z in zs for x in (f"{ZONE_LABELS[z]}: drifting", "mean |delta|")] + ["recoveries", "iatrogenic"]
    reading = []
    for z, ph in comp["phenomena"].items():
        if ph["heads"] and ph["half_peak_at"] is not None:
            reading.append(f"{ZONE_LABELS[z]} ({ph['heads']} heads): mean |delta| peaks at {ph['peak_mean_abs_delta']:.4f} and first "
                           f"reaches half of that at {ph['half_peak_at']} ({100 * ph['half_peak_position']:.0f}% through the evaluations)")
    return (_fig(figs, "zones") + "<p>" + esc("; ".join(reading) or "no drift to time") + ". Early global redistribution shows as outside-zone "
            "drift reaching its level early; late local degradation as in-zone frozen drift still rising at the end.</p>"
            + table(headers, rows, numeric=set(range(1, len(headers)))))


def columns_section(d: dict, figs: dict) -> str:
    comp = d["comparison"]
    if not comp:
        return ""
    labels = [r["label"] for r in comp["trajectory"]]
    show = list(range(len(labels))) if len(labels) <= 6 else [0, len(labels) // 2, len(labels) - 1]
    rows = [[f"H{c['index']}", num(c["heads"]), num(c["targets"])] + [num(c["mean_abs_delta"][k]) for k in show]
            + [num(c["drifting"][-1]), num(c["change"])] for c in comp["columns"]]
    headers = ["column", "frozen heads", "targets"] + [f"mean |delta| {labels[k]}" for k in show] + [f"drifting {labels[-1]}", "change"]
    return (_fig(figs, "columns") + "<p>Targets are left out of the columns: their change is the surgery itself. "
            f"'change' is the last minus the first of the later diagnoses ({esc(labels[0])} to {esc(labels[-1])}).</p>"
            + table(headers, rows, numeric=set(range(1, len(headers)))))


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def visible(text: str) -> str:
    """Generated text as shown in HTML: line breaks normalised, control characters (which HTML
    forbids and random models emit) replaced by U+FFFD. report.json keeps the raw text."""
    return _CONTROL.sub("\ufffd", text.replace("\r\n", "\n").replace("\r", "\n"))


def generations_section(d: dict) -> str:
    g = d["generations"]
    if "skipped" in g:
        return f"<p class='muted'>Generations: {esc(g['skipped'])}.</p>"
    labels = list(g["texts"])
    s = g["settings"]
    rows = [[f"<pre class='gen'>{esc(visible(p))}</pre>"] + [f"<pre class='gen'>{esc(visible(g['texts'][k][i]))}</pre>" for k in labels]
            for i, p in enumerate(g["prompts"])]
    return (f"<p>Sampled with seed {s['seed']} (the same for every checkpoint; all prompts in one batch), temperature {s['temperature']}, "
            f"top-p {s['top_p']}, up to {s['max_new_tokens']} new tokens, with plain <code>transformers</code> "
            f"<code>generate</code> on each saved folder.</p>" + table(["prompt"] + labels, rows))


def dormancy_section(d: dict) -> str:
    g = d["dormancy"]
    if "skipped" in g:
        return f"<p class='muted'>MLP dormancy: {esc(g['skipped'])}.</p>"
    labels = list(g["models"])
    first = g["models"][labels[0]]

    def cell(entry) -> str:
        return f"{num(entry['dormant'])} ({pct(entry['fraction'], 2)})"

    # Only layers where some model has a dormant neuron: 30 rows of "0 (0.00%)" said nothing.
    shown = [i for i in range(len(first["per_layer"])) if any(g["models"][k]["per_layer"][i]["dormant"] for k in labels)]
    rows = [[num(first["per_layer"][i]["layer"]), num(first["per_layer"][i]["neurons"])]
            + [cell(g["models"][k]["per_layer"][i]) for k in labels] for i in shown]
    rows.append(["all", num(first["neurons"])] + [cell(g["models"][k]) for k in labels])
    left_out = len(first["per_layer"]) - len(shown)
    verdict = "identical in every layer" if g["identical"] else "DIFFERENT between models"
    quietest = ", ".join(f"{k} {num(g['models'][k].get('min_product'))}" for k in labels)
    return (f"<p>A neuron is dormant when ||up row|| x ||down column|| &lt; {first['threshold']}. Dormant counts are "
            f"<b class='{'ok' if g['identical'] else 'bad'}'>{verdict}</b>. Smallest product in the model: {esc(quietest)}."
            + (f" {left_out} of {len(first['per_layer'])} layers have no dormant neuron in any model and are not listed." if left_out else "")
            + "</p>" + table(["layer", "neurons"] + labels, rows, numeric=set(range(0, 2 + len(labels)))))


def ablation_section(d: dict) -> str:
    a = d["ablation"]
    if "skipped" in a:
        return f"<p class='muted'>Head ablation: {esc(a['skipped'])}.</p>"
    labels = list(a["models"])
    s = a["settings"]
    rows = []
    for grp, info in a["groups"].items():
        cells = [esc(grp), num(info["size"]), num(len(info["sampled"]))]
        for k in labels:
            g = a["models"][k]["groups"][grp]
            cells += [num(g["mean_per_head"]), num(g["set_delta"])]
        rows.append(cells)
    headers = ["group (from the stock diagnosis)", "heads", "ablated one by one"] + [x for k in labels for x in (f"{k}: mean per head", f"{k}: whole group")]
    base = ", ".join(f"{k} {a['models'][k]['base_loss']:.4f}" for k in labels)
    return (f"<p>Loss increase in nats per token when heads' outputs are zeroed (at the output projection's input), on "
            f"{s['sequences']} {esc(s.get('split', ''))} sequences of {s['seq_len']} tokens. Base loss: {esc(base)}.</p>"
            + table(headers, rows, numeric=set(range(1, len(headers))))
            + "<p class='muted'>Heads ablated one by one: " + esc("; ".join(f"{g}: {', '.join(i['sampled']) or 'none'}" for g, i in a["groups"].items())) + "</p>")


def invariant_section(d: dict) -> str:
    inv = d["run"].get("invariant") or {}
    if not inv:
        return "<p>Not checked yet (the run checks it when it finishes).</p>"
    rows = [[esc(k), f"<b class='{'ok' if v.get('held') else 'bad'}'>{'held' if v.get('held') else 'VIOLATED'}</b>", num(v.get("checked_tensors")),
             esc(", ".join(v.get("changed", [])) or "none"), esc(", ".join(v.get("missing", [])) or "none"), esc(", ".join(v.get("not_stored", [])) or "none")]
            for k, v in inv.items()]
    return ("<p>Every parameter element outside the surgical slices, re-hashed in the saved model and compared with the input model.</p>"
            + table(["model", "invariant", "tensors checked", "changed", "missing", "not stored (tied)"], rows, numeric={2}))


def setup_section(d: dict) -> str:
    run = d["run"]
    cfg = dict(run.get("config") or {})
    steps = (run.get("outcome") or {}).get("steps")
    if cfg.get("max_steps"):
        decided = f"max_steps = {cfg['max_steps']} (epochs = {cfg.get('epochs')} was not used)"
        cfg["epochs"] = f"{cfg.get('epochs')} (not used: max_steps set)"
    else:
        decided = f"epochs = {cfg.get('epochs')}" + (f" ({steps:,} steps)" if steps else "")
    cfg = {"number of steps decided by": decided, **cfg}
    parts = ["<h3>Configuration</h3>" + kv_table(cfg), "<h3>Versions</h3>" + kv_table(run.get("versions") or {})]
    corpus = {k: v for k, v in (run.get("corpus") or {}).items() if not isinstance(v, (dict, list))}
    parts.append("<h3>Training corpus</h3>" + kv_table(corpus))
    if run.get("other_corpus"):
        parts.append("<h3>Other-distribution set</h3>" + kv_table(run["other_corpus"]))
    extra = {"trainable parameters": run.get("trainable_parameters"), "fingerprint": run.get("fingerprint"), "created": run.get("created"),
             "updated": run.get("updated"), "resumed": run.get("resumed"), **(run.get("timing") or {})}
    parts.append("<h3>Run</h3>" + kv_table(extra))
    return "".join(parts)


def all_sections(d: dict, figs: dict) -> list[tuple[str, str, str]]:
    return [
        ("plan", "Plan", plan_section(d)),
        ("perplexity", "Perplexity", perplexity_section(d, figs)),
        ("topology", "Head topology", topology_section(d, figs)),
        ("drift", "Drift after surgery", drift_section(d, figs)),
        ("trajectory", "Drift over the run", trajectory_section(d, figs)),
        ("columns", "Column drift", columns_section(d, figs)),
        ("generations", "Generations", generations_section(d)),
        ("dormancy", "MLP dormancy", dormancy_section(d)),
        ("ablation", "Head ablation", ablation_section(d)),
        ("invariant", "Invariant", invariant_section(d)),
        ("setup", "Configuration and versions", setup_section(d)),
    ]
