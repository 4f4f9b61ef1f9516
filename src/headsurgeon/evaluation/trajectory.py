"""The perplexity trajectory of a surgery run, read from its manifest (nothing is recomputed).

``operate`` evaluates the stock model, the model right after re-initialisation (step 0), every
``eval_every`` steps and at each epoch end, on three text sets: ``train`` (rows of the training
corpus), ``heldout`` (held-out documents of the same corpus) and ``other`` (a different
distribution). This module lays those rows out as series for tables and the figure, with the
best step and the stock values as references.
"""

from __future__ import annotations

SETS = ("train", "heldout", "other")
SET_LABELS = {"train": "training corpus", "heldout": "held-out, same distribution", "other": "held-out, other distribution"}


def perplexity_trajectory(manifest) -> dict:
    """``{steps, epochs, tokens, series: {set: [ppl per evaluation]}, stock: {set: ppl}, best, points}``.

    ``manifest``: a :class:`~headsurgeon.surgery.manifest.RunManifest` (what
    :func:`~.inputs.load_run` gives) or its dict.

    ``points`` names the rows a reader asks about first: stock, right after re-initialisation,
    best and final (the last evaluation), each with its perplexities.
    """
    if not isinstance(manifest, dict):
        manifest = manifest.to_dict()
    rows = sorted(manifest.get("history", []), key=lambda r: r["step"])
    stock = manifest.get("stock") or {}
    present = [s for s in SETS if any(f"{s}_ppl" in r for r in rows) or f"{s}_ppl" in stock]
    series = {s: [r.get(f"{s}_ppl") for r in rows] for s in present}
    best = manifest.get("best")
    points = {"stock": {s: stock.get(f"{s}_ppl") for s in present}}
    if rows and rows[0]["step"] == 0:
        points["after re-initialisation"] = {"step": 0, **{s: rows[0].get(f"{s}_ppl") for s in present}}
    if best is not None:
        row = next((r for r in rows if r["step"] == best["step"]), None)
        if row is not None:
            points["best"] = {"step": best["step"], **{s: row.get(f"{s}_ppl") for s in present}}
    if rows:
        points["final" if manifest.get("status") == "finished" else "latest"] = {"step": rows[-1]["step"], **{s: rows[-1].get(f"{s}_ppl") for s in present}}
    return {
        "sets": present,
        "steps": [r["step"] for r in rows],
        "epochs": [r.get("epoch") for r in rows],
        "tokens": [r.get("tokens") for r in rows],
        "train_loss": [r.get("train_loss") for r in rows],
        "targets_healthy": [r.get("targets_healthy") for r in rows],
        "series": series,
        "stock": points["stock"],
        "best": best,
        "points": points,
    }
