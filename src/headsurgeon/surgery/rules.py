"""``make_plan``: build a surgery plan from a diagnosis by combinable rules.

Rules (all optional, combined as a union of selections, then minus exclusions):

* ``classes``: heads whose class is one of these (e.g. ``bos_sink``, ``dead``);
* ``band`` + ``layers``: every head whose index is in the band, in the layer range; heads that
  are already healthy there are *kept frozen* (``skip_healthy_in_band``), like the paper's pass 1;
* ``top``: the N heads with the highest BOS mass;
* ``heads``: explicit heads;
* ``extra_columns``: whole head-index columns added as targets even where healthy (the paper's
  "extended surgery", e.g. its H5 column).

``layers`` and ``band`` also restrict ``classes`` and ``top``. Every selected head carries a
reason, and the plan lists the rules in words.
"""

from __future__ import annotations

from headsurgeon.diagnosis import COLLAPSED, LABELS, Diagnosis
from headsurgeon.errors import HeadsurgeonError
from headsurgeon.models.adapters import HeadRef

from .plan import MODEL_KEYS, SurgeryPlan


def parse_range(text: str | None, what: str, upper: int) -> tuple[int, int] | None:
    """``"5-22"`` or ``"7"`` -> inclusive ``(lo, hi)``, checked against ``[0, upper)``."""
    if text in (None, ""):
        return None
    try:
        parts = [int(x) for x in str(text).split("-")]
        lo, hi = (parts[0], parts[-1]) if len(parts) in (1, 2) else (None, None)
    except ValueError:
        lo = hi = None
    if lo is None or not (0 <= lo <= hi < upper):
        raise HeadsurgeonError(f"--{what} '{text}' is not a range within 0..{upper - 1}; write e.g. --{what} 0-{upper - 1}")
    return lo, hi


def parse_head(text: str) -> HeadRef:
    """``"L12H3"`` or ``"12:3"`` -> ``HeadRef(12, 3)``."""
    t = text.strip().upper()
    try:
        if t.startswith("L") and "H" in t:
            layer, head = t[1:].split("H")
        else:
            layer, head = t.split(":")
        return HeadRef(int(layer), int(head))
    except ValueError:
        raise HeadsurgeonError(f"head '{text}' is not a head; write it like L12H3 or 12:3") from None


def make_plan(
    diagnosis: Diagnosis,
    *,
    classes: list[str] | None = None,
    layers: tuple[int, int] | None = None,
    band: tuple[int, int] | None = None,
    top: int | None = None,
    heads: list[HeadRef] | None = None,
    extra_columns: list[int] | None = None,
    skip_healthy_in_band: bool = True,
    gqa_mode: str = "query",
) -> SurgeryPlan:
    """Select target heads from ``diagnosis`` by the rules given; returns a :class:`SurgeryPlan`.

    ``classes`` (e.g. ``["bos_sink", "dead"]``) selects heads of those classes; ``top=N`` the N
    heads with the highest BOS mass; ``heads`` explicit :class:`HeadRef` s; ``extra_columns``
    whole head-index columns, healthy heads included (extended surgery). ``layers`` and ``band``
    (inclusive ``(lo, hi)`` ranges of layers and head indices) restrict every rule; ``band``
    alone selects the band's collapsed heads and, with ``skip_healthy_in_band``, keeps its
    healthy ones frozen (``plan.frozen_in_zone``), as in the paper's first pass. ``gqa_mode``:
    ``"query"`` re-initialises only the query head of a grouped-query model (its shared K/V stay
    frozen), ``"group"`` the whole KV group. Rules combine as a union; every target carries its
    reason (``plan.reasons``) and ``plan.rules`` states the rules in words. Raises
    :class:`HeadsurgeonError` when the rules select nothing or a range is out of bounds.

    >>> plan = make_plan(diagnosis, classes=["bos_sink", "dead"], layers=(5, 22))
    """
    L, H = diagnosis.shape
    bos, cls = diagnosis.bos_mass, diagnosis.classes
    lo_l, hi_l = layers or (0, L - 1)
    lo_b, hi_b = band or (0, H - 1)
    in_zone = [HeadRef(l, h) for l in range(lo_l, hi_l + 1) for h in range(lo_b, hi_b + 1)]
    targets: dict[HeadRef, str] = {}
    rules: list[str] = []
    frozen: list[HeadRef] = []
    where = f"layers {lo_l}-{hi_l}, heads {lo_b}-{hi_b}"

    def why(h: HeadRef) -> str:
        return f"{LABELS[cls[h.layer, h.head]]}, BOS mass {bos[h.layer, h.head]:.3f}"

    if classes:
        bad = [c for c in classes if c not in LABELS]
        if bad:
            raise HeadsurgeonError(f"unknown class {bad[0]!r}; choose from {', '.join(LABELS)}")
        rules.append(f"class in {{{', '.join(classes)}}} within {where}")
        for h in in_zone:
            if cls[h.layer, h.head] in classes:
                targets.setdefault(h, f"class rule: {why(h)}")
    if band is not None and not classes and top is None:
        rules.append(f"head band {lo_b}-{hi_b} in layers {lo_l}-{hi_l}" + (", healthy heads kept frozen" if skip_healthy_in_band else ""))
        for h in in_zone:
            if skip_healthy_in_band and cls[h.layer, h.head] not in COLLAPSED:
                frozen.append(h)
            else:
                targets.setdefault(h, f"band rule: {why(h)}")
    elif band is not None:
        frozen += [h for h in in_zone if h not in targets]
    if top is not None:
        if top < 1:
            raise HeadsurgeonError(f"--top must be at least 1, not {top}; write e.g. --top 10")
        rules.append(f"top {top} heads by BOS mass within {where}")
        ranked = sorted(in_zone, key=lambda h: -bos[h.layer, h.head])[:top]
        for rank, h in enumerate(ranked, 1):
            targets.setdefault(h, f"top-{top} rule (rank {rank}): {why(h)}")
    for h in heads or []:
        if not (0 <= h.layer < L and 0 <= h.head < H):
            raise HeadsurgeonError(f"head {h} is out of range for {L} layers x {H} heads; use zero-based indices below those")
        targets.setdefault(h, f"explicit: {why(h)}")
    if heads:
        rules.append("explicit heads " + ", ".join(str(h) for h in heads))
    for c in extra_columns or []:
        if not 0 <= c < H:
            raise HeadsurgeonError(f"--extra-column {c} is out of range; pick a head index in 0..{H - 1}")
        rules.append(f"extended surgery: whole column H{c} in layers {lo_l}-{hi_l}")
        for l in range(lo_l, hi_l + 1):
            targets.setdefault(HeadRef(l, c), f"extra column H{c}: {why(HeadRef(l, c))}")

    kv = diagnosis.model.get("num_kv_heads", H) or H
    if gqa_mode == "group" and kv < H:
        per = H // kv
        rules.append("gqa_mode=group: every query head of a target's KV group is a target")
        for h in list(targets):
            g = h.head // per
            for q in range(g * per, (g + 1) * per):
                targets.setdefault(HeadRef(h.layer, q), f"shares KV group {g} with {h}")
    if not targets:
        raise HeadsurgeonError("these rules select no heads; relax them (e.g. --class bos_sink,dead or --top 20)")
    # the model the plan is for: family, shape and weights fingerprint (checked by operate)
    model = {k: diagnosis.model.get(k) for k in MODEL_KEYS if k not in ("source", "attention") and diagnosis.model.get(k) is not None}
    if diagnosis.model.get("attention"):  # the family's declarations and warnings travel with the plan
        model["attention"] = diagnosis.model["attention"]
    return SurgeryPlan(
        model=model,
        targets=list(targets),
        frozen_in_zone=[h for h in frozen if h not in targets],
        gqa_mode=gqa_mode,
        rules=rules,
        reasons={str(h): r for h, r in sorted(targets.items())},
    )
