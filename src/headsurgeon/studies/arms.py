"""Which heads each arm trains, chosen by plan rules from the stock model's diagnosis.

* ``surgery`` / ``no_reinit`` / ``lora`` share the *targets*: the ``n_targets`` most collapsed
  heads (highest BOS mass among BOS-sink and DEAD heads), or with ``target_rule="top"`` the
  highest BOS mass whatever the class (tiny random models have no collapsed heads).
* ``random_healthy``: as many heads drawn at random (per seed) from the heads classed healthy,
  never a target. With ``random_same_layers`` each draw comes from the layer of the target it
  stands in for while that layer has healthy heads left, so the control also matches the
  targets' depth (how far back gradients flow and how much compute a step costs); otherwise
  from any layer.
* ``extended``: the targets plus whole head columns inside the targets' layer range (the
  paper's "extended surgery"); by default the column with the most healthy heads there.

Every plan is made by :func:`headsurgeon.surgery.make_plan`, so it carries its rules and a
reason per head, and is saved beside the study.
"""

from __future__ import annotations

import numpy as np

from headsurgeon.diagnosis import COLLAPSED, HEALTHY, Diagnosis
from headsurgeon.errors import HeadsurgeonError
from headsurgeon.models.adapters import HeadRef
from headsurgeon.surgery import SurgeryPlan, make_plan

from .settings import StudySettings

GQA = "query"  # a target's shared K/V stays frozen (the surgery default; see surgery/plan.py)


def choose_targets(diag: Diagnosis, n: int, rule: str = "collapsed", layers: tuple[int, int] | None = None) -> list[HeadRef]:
    """The ``n`` heads with the highest BOS mass (collapsed ones only unless ``rule="top"``)."""
    L, H = diag.shape
    lo, hi = layers or (0, L - 1)
    pool = [HeadRef(l, h) for l in range(lo, hi + 1) for h in range(H)]
    if rule == "collapsed":
        pool = [h for h in pool if diag.classes[h.layer, h.head] in COLLAPSED]
    ranked = sorted(pool, key=lambda h: (-float(diag.bos_mass[h.layer, h.head]), h))
    if len(ranked) < n:
        what = "collapsed heads" if rule == "collapsed" else "heads"
        raise HeadsurgeonError(f"the model has {len(ranked)} {what} in layers {lo}-{hi}, fewer than --targets {n}; lower --targets"
                               + (" or use --target-rule top" if rule == "collapsed" else ""))
    return sorted(ranked[:n])


def random_healthy(diag: Diagnosis, targets: list[HeadRef], seed: int, *, same_layers: bool = True) -> list[HeadRef]:
    """``len(targets)`` distinct healthy non-target heads, drawn with ``seed`` (see module doc).

    With ``same_layers``, each target is stood in for by a healthy head of its own layer, or, when
    that layer has none left, of the nearest layer that has (late layers of small models are often
    mostly collapsed), so the control keeps the targets' depth profile.
    """
    L, H = diag.shape
    taken = set(targets)
    healthy = [HeadRef(l, h) for l in range(L) for h in range(H) if diag.classes[l, h] == HEALTHY and HeadRef(l, h) not in taken]
    if len(healthy) < len(targets):
        raise HeadsurgeonError(f"the model has {len(healthy)} healthy non-target heads, fewer than the {len(targets)} targets; lower --targets")
    rng = np.random.default_rng([int(seed), 0x5EED])
    chosen: list[HeadRef] = []
    for t in targets:
        left = [h for h in healthy if h not in chosen]
        if same_layers:
            nearest = min(abs(h.layer - t.layer) for h in left)
            left = [h for h in left if abs(h.layer - t.layer) == nearest]
        chosen.append(left[int(rng.integers(len(left)))])
    return sorted(chosen)


def extended_columns(diag: Diagnosis, targets: list[HeadRef], columns: tuple[int, ...] | None) -> tuple[int, ...]:
    """The given columns, or the one with the most healthy heads in the targets' layer range."""
    if columns:
        return tuple(columns)
    lo, hi = min(t.layer for t in targets), max(t.layer for t in targets)
    L, H = diag.shape
    healthy = [sum(diag.classes[l, h] == HEALTHY and HeadRef(l, h) not in targets for l in range(lo, hi + 1)) for h in range(H)]
    return (int(np.argmax(healthy)),)


def target_plan(diag: Diagnosis, settings: StudySettings) -> SurgeryPlan:
    """The targets' plan (``surgery``, ``no_reinit`` and ``lora`` train it; the stock row tracks its heads)."""
    targets = choose_targets(diag, settings.n_targets, settings.target_rule, settings.layers)
    base = make_plan(diag, heads=targets, gqa_mode=GQA)
    base.rules = [f"{settings.target_rule} rule: the {len(targets)} heads with the highest BOS mass"
                  + (" among BOS-sink and DEAD heads" if settings.target_rule == "collapsed" else "")
                  + (f" in layers {settings.layers[0]}-{settings.layers[1]}" if settings.layers else "")]
    return base


def arm_plans(diag: Diagnosis, settings: StudySettings, seed: int) -> dict[str, SurgeryPlan]:
    """Plan for every *chosen* training arm (``settings.arms``) for one seed; ``lora`` gets the
    targets' plan: it trains their layers and its count is matched to theirs. Arms not chosen are
    not planned (no random draw, no extended column)."""
    base = target_plan(diag, settings)
    targets = base.targets
    plans: dict[str, SurgeryPlan] = {}
    for arm in settings.training_arms:
        if arm in ("surgery", "no_reinit", "lora"):
            plans[arm] = base
        elif arm == "random_healthy":
            heads = random_healthy(diag, targets, seed, same_layers=settings.random_same_layers)
            p = make_plan(diag, heads=heads, gqa_mode=GQA)
            p.rules = [f"{len(heads)} healthy non-target heads drawn with seed {seed}"
                       + (" from the targets' layers where possible" if settings.random_same_layers else "")]
            plans[arm] = p
        elif arm == "extended":
            cols = extended_columns(diag, targets, settings.extra_columns)
            lo, hi = min(t.layer for t in targets), max(t.layer for t in targets)
            p = make_plan(diag, heads=targets, extra_columns=list(cols), layers=(lo, hi), gqa_mode=GQA)
            p.rules = base.rules + [r for r in p.rules if r.startswith("extended")]
            plans[arm] = p
    return plans
