"""Surgery plans: which heads to re-initialise, which to keep frozen, and why.

A plan is a small, human-editable JSON or YAML file::

    kind: plan
    model: {name: ..., num_layers: 30, num_heads: 9, num_kv_heads: 3}
    gqa_mode: query          # or: group
    targets: {"12": [0, 8], "14": [0, 1, 2]}     # layer -> head indices
    frozen_in_zone: {"14": [8]}                  # inside the surgical zone, kept frozen
    rules: ["class in {bos_sink, dead}", ...]
    reasons: {"L12H0": "bos_sink (BOS mass 0.61)", ...}

Grouped-query attention (``gqa_mode``): in ``query`` mode (the default) only the target's
query slice and its output-projection columns are re-initialised and trained; the K/V pair it
shares with the other query heads of its group stays frozen, because re-initialising it would
also wipe the (often healthy) neighbours that read it. In ``group`` mode the whole KV group is
re-initialised and every query head of the group becomes a target. For families without GQA
the two modes are the same.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.io import atomic_write_text, envelope, now_iso
from headsurgeon.models.adapters import HeadRef

GQA_MODES = ("query", "group")


def _by_layer(heads: list[HeadRef]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for h in sorted(set(heads)):
        out.setdefault(str(h.layer), []).append(h.head)
    return out


def _from_layer_map(doc: dict | None, where: str) -> list[HeadRef]:
    heads = []
    for layer, idx in (doc or {}).items():
        try:
            heads += [HeadRef(int(layer), int(h)) for h in idx]
        except (TypeError, ValueError):
            raise HeadsurgeonError(f"plan field '{where}' must map layer numbers to lists of head numbers; fix layer {layer!r}") from None
    return sorted(set(heads))


@dataclass
class SurgeryPlan:
    """Targets to re-initialise and train; ``frozen_in_zone`` are kept as they are."""

    model: dict
    targets: list[HeadRef]
    frozen_in_zone: list[HeadRef] = field(default_factory=list)
    gqa_mode: str = "query"
    rules: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    created: str = field(default_factory=now_iso)

    def __post_init__(self):
        if self.gqa_mode not in GQA_MODES:
            raise HeadsurgeonError(f"gqa_mode must be one of {', '.join(GQA_MODES)}, not '{self.gqa_mode}'")
        self.targets = sorted(set(self.targets))
        self.frozen_in_zone = sorted(set(self.frozen_in_zone) - set(self.targets))

    @property
    def warnings(self) -> list[str]:
        """The model family's surgery warnings (OLMo 2: surgery is not local), from ``model.attention``."""
        return list(((self.model or {}).get("attention") or {}).get("warnings") or [])

    def zone(self) -> list[HeadRef]:
        return sorted(set(self.targets) | set(self.frozen_in_zone))

    def check_against(self, num_layers: int, num_heads: int, name: str | None = None) -> None:
        """One-line error if a head is out of range or the plan was made for another model shape."""
        if not self.targets:
            raise HeadsurgeonError("the plan has no target heads; widen the rules or add heads with --head")
        m = self.model
        if m.get("num_layers") not in (None, num_layers) or m.get("num_heads") not in (None, num_heads):
            raise HeadsurgeonError(
                f"this plan was made for a model with {m.get('num_layers')} layers x {m.get('num_heads')} heads "
                f"({m.get('name')}), not {num_layers} x {num_heads} ({name}); make a plan from this model's diagnosis"
            )
        for h in self.targets + self.frozen_in_zone:
            if not (0 <= h.layer < num_layers and 0 <= h.head < num_heads):
                raise HeadsurgeonError(f"plan head {h} is out of range for {num_layers} layers x {num_heads} heads; fix the plan file")

    # ----- file form ------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            **envelope("plan", created=self.created),
            "model": self.model,
            "gqa_mode": self.gqa_mode,
            "targets": _by_layer(self.targets),
            "frozen_in_zone": _by_layer(self.frozen_in_zone),
            "rules": self.rules,
            "reasons": self.reasons,
            "n_targets": len(self.targets),
            "warnings": self.warnings,
        }

    @classmethod
    def from_dict(cls, doc: dict) -> SurgeryPlan:
        if not isinstance(doc, dict) or doc.get("kind", "plan") != "plan":
            raise HeadsurgeonError("this file is not a surgery plan (kind: plan); make one with `headsurgeon plan`")
        return cls(
            model=doc.get("model", {}),
            targets=_from_layer_map(doc.get("targets"), "targets"),
            frozen_in_zone=_from_layer_map(doc.get("frozen_in_zone"), "frozen_in_zone"),
            gqa_mode=doc.get("gqa_mode", "query"),
            rules=list(doc.get("rules", [])),
            reasons=dict(doc.get("reasons", {})),
            created=doc.get("created", now_iso()),
        )

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        doc = self.to_dict()
        if path.suffix in (".yaml", ".yml"):
            import yaml

            atomic_write_text(path, yaml.safe_dump(doc, sort_keys=False))
        else:
            atomic_write_text(path, json.dumps(doc, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> SurgeryPlan:
        p = Path(path).expanduser()
        if not p.is_file():
            raise HeadsurgeonError(f"plan file {p} does not exist; make one with `headsurgeon plan`")
        text = p.read_text(encoding="utf-8")
        try:
            if p.suffix in (".yaml", ".yml"):
                import yaml

                doc = yaml.safe_load(text)
            else:
                doc = json.loads(text)
        except Exception:
            raise HeadsurgeonError(f"plan file {p} does not parse as {'YAML' if p.suffix in ('.yaml', '.yml') else 'JSON'}; fix its syntax") from None
        return cls.from_dict(doc)
