"""The top of the report: did the surgery work, on what, at what cost, and how sure can one be.

A reader opening ``report.html`` asks those four questions first, so :func:`summarise` answers
them from the report data alone (nothing is recomputed) and the result is stored in
``report.json`` under ``summary``: the HTML never shows a headline number the JSON lacks.

Every headline figure is given for the stock model and for the repaired checkpoints (best and,
when it differs, final), with its change in absolute terms and in percent, good and bad alike:
held-out perplexity of the training distribution *and* of the other distribution (surgery
tends to help the first and cost the second), training-corpus perplexity, targets healthy and
collapsed heads in the whole model. A single run has no control, so the summary says in one
sentence what it can show and what it cannot, and points to ``headsurgeon study``.
"""

from __future__ import annotations

#: Perplexity headline rows: (set, label, which direction is better).
_PPL_ROWS = (
    ("heldout", "held-out perplexity, training distribution", "lower"),
    ("other", "held-out perplexity, other distribution", "lower"),
    ("train", "perplexity on the training corpus", "lower"),
)


def _collapsed(counts: dict | None) -> int | None:
    if not counts:
        return None
    return int(counts.get("bos_sink", 0)) + int(counts.get("dead", 0))


def _change(before, after, better: str) -> dict:
    """``after - before`` absolute and relative, and whether it went the good way."""
    if before is None or after is None:
        return {"change": None, "change_percent": None, "verdict": None}
    delta = after - before
    percent = 100.0 * delta / before if before else None
    if delta == 0:
        verdict = "unchanged"
    else:
        verdict = "better" if (delta < 0) == (better == "lower") else "worse"
    return {"change": delta, "change_percent": percent, "verdict": verdict}


def _checkpoints(d: dict) -> list[dict]:
    """The repaired points to compare with stock: best, and final/latest when it is another step."""
    pts = d["perplexity"]["points"]
    out = []
    if "best" in pts:
        out.append({"key": "best", **pts["best"]})
    for key in ("final", "latest"):
        if key in pts and not (out and out[0].get("step") == pts[key].get("step")):
            out.append({"key": key, **pts[key]})
    if out and out[0]["key"] == "best" and len(out) == 1 and "final" in pts:
        out[0]["key"] = "best = final"
    return out


def _rows(d: dict, points: list[dict]) -> list[dict]:
    stock = d["perplexity"]["points"].get("stock", {})
    by_step = {r["step"]: r for r in d["history"]}
    stock_row = d["run"].get("stock") or {}
    rows = []
    for key, label, better in _PPL_ROWS:
        if key not in d["perplexity"]["sets"]:
            rows.append({"key": key, "label": label, "better": better, "stock": None, "points": [],
                         "missing": "not measured in this run"})
            continue
        before = stock.get(key)
        rows.append({"key": key, "label": label, "better": better, "stock": before,
                     "points": [{"value": p.get(key), **_change(before, p.get(key), better)} for p in points]})
    n_targets = (d["run"].get("outcome") or {}).get("targets") or (d["run"].get("plan") or {}).get("n_targets")
    stock_healthy = stock_row.get("targets_healthy")
    rows.append({"key": "targets_healthy", "label": f"targets healthy (of {n_targets})", "of": n_targets, "better": "higher",
                 "stock": stock_healthy,
                 "points": [{"value": by_step.get(p.get("step"), {}).get("targets_healthy"),
                             **_change(stock_healthy, by_step.get(p.get("step"), {}).get("targets_healthy"), "higher")} for p in points]})
    stock_collapsed = _collapsed(stock_row.get("model_counts"))
    rows.append({"key": "collapsed_heads", "label": "collapsed heads in the model (BOS-sink + DEAD)", "better": "lower",
                 "stock": stock_collapsed,
                 "points": [{"value": _collapsed(by_step.get(p.get("step"), {}).get("model_counts")),
                             **_change(stock_collapsed, _collapsed(by_step.get(p.get("step"), {}).get("model_counts")), "lower")}
                            for p in points]})
    return rows


def _cost(d: dict) -> dict:
    run = d["run"]
    out = run.get("outcome") or {}
    timing = run.get("timing") or {}
    hist = d["history"]
    cost = {
        "steps": out.get("steps", hist[-1]["step"] if hist else None),
        "tokens": out.get("tokens", hist[-1].get("tokens") if hist else None),
        "train_seconds": timing.get("train_seconds"),
        "trainable_parameters": run.get("trainable_parameters"),
        "outside_zone_drifting": None,
        "outside_zone_heads": None,
        "iatrogenic": None,
    }
    comp = d.get("comparison")
    if comp:
        z = comp["final"]["zones"].get("outside_zone") or {}
        cost.update(outside_zone_drifting=z.get("drifting"), outside_zone_heads=z.get("heads"),
                    iatrogenic=len(comp["final"]["iatrogenic"]))
    return cost


_POINT_NAMES = {"best": "the best checkpoint (step {})", "best = final": "the best checkpoint (step {}, also the final one)",
                "final": "the final checkpoint (step {})", "latest": "the latest evaluation (step {})"}
_DISTRIBUTIONS = {"heldout": "the training distribution", "other": "the other distribution"}


def _sentences(d: dict, rows: list[dict], points: list[dict]) -> dict:
    """Plain sentences: what happened, and what a single run can and cannot show."""
    name = (d["run"].get("model") or {}).get("name", "the model")
    by_key = {r["key"]: r for r in rows}
    if not points:
        what = f"{name}: no evaluation after surgery yet."
    else:
        first = points[0]
        th = by_key["targets_healthy"]["points"][0] if by_key["targets_healthy"]["points"] else {}
        stock_th = by_key["targets_healthy"]["stock"]
        head = f"{name}, at " + _POINT_NAMES.get(first["key"], first["key"] + " (step {})").format(first.get("step"))
        parts = []
        if th.get("value") is not None:
            parts.append(f"{th['value']} of {by_key['targets_healthy']['of']} target heads are healthy"
                         + (f" ({stock_th} in the stock model)" if stock_th is not None else ""))
        for key in ("heldout", "other"):
            r = by_key[key]
            p = r["points"][0] if r["points"] else {}
            if r.get("missing"):
                parts.append(f"held-out perplexity on {_DISTRIBUTIONS[key]} was not measured")
            elif p.get("value") is not None and r["stock"] is not None:
                pct = "" if p["change_percent"] is None else f"{p['change_percent']:+.1f}%, "
                parts.append(f"held-out perplexity on {_DISTRIBUTIONS[key]} went from {r['stock']:.3f} to {p['value']:.3f} "
                             f"({pct}{p['verdict']})")
        what = head + ": " + "; ".join(parts) + "."
    study = bool(d.get("study"))
    limits = ("This is one run with one seed and no controls: it shows what this plan did to this model, not that re-initialising "
              "these heads is what made the difference (training other heads, or the same heads without re-initialisation, may do "
              "as well), nor how much the figures vary between seeds. "
              + ("The controlled study section below compares surgery with those controls over several seeds."
                 if study else "Run `headsurgeon study` to compare surgery with those controls over several seeds."))
    return {"what_happened": what, "what_it_cannot_show": limits}


def summarise(d: dict) -> dict:
    """``report.json['summary']``: the headline rows, the cost and the two sentences."""
    points = _checkpoints(d)
    rows = _rows(d, points)
    cost = _cost(d)
    return {"compared": [{"key": p["key"], "step": p.get("step")} for p in points], "rows": rows, "cost": cost,
            **_sentences(d, rows, points)}
