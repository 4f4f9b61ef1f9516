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

from headsurgeon._version import DOCUMENT_VERSIONS
from headsurgeon.errors import HeadsurgeonError
from headsurgeon.io import atomic_write_text, envelope, now_iso
from headsurgeon.models.adapters import HeadRef
from headsurgeon.strict import DuplicateKeyError, load_json_strict, load_yaml_strict, read_utf8

GQA_MODES = ("query", "group")


def _by_layer(heads: list[HeadRef]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for h in sorted(set(heads)):
        out.setdefault(str(h.layer), []).append(h.head)
    return out


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _from_layer_map(doc, where: str) -> list[HeadRef]:
    """``{"12": [0, 8]}`` -> HeadRefs; anything but whole numbers (``1.9``, ``true``, ``"3"``) is refused."""
    if doc is None:
        return []
    if not isinstance(doc, dict):
        raise HeadsurgeonError(f"plan field '{where}' must map layer numbers to lists of head numbers, "
                               f"not {type(doc).__name__} {_short(doc)}; write e.g. {where}: {{\"12\": [0, 8]}}")
    heads = []
    for layer, idx in doc.items():
        if not (_is_int(layer) or (isinstance(layer, str) and layer.strip().isdigit() and layer.strip().isascii())):
            raise HeadsurgeonError(f"plan field '{where}' has layer key {layer!r}, not a whole number >= 0; fix that key")
        if not isinstance(idx, list):
            raise HeadsurgeonError(f"plan field '{where}' layer {layer} must be a list of head numbers, not {_short(idx)}; write e.g. [0, 8]")
        seen = set()
        for h in idx:
            if not _is_int(h) or h < 0:
                raise HeadsurgeonError(f"plan field '{where}' layer {layer} lists {h!r}, not a head number (a whole number >= 0); fix it")
            if h in seen:
                raise HeadsurgeonError(f"plan field '{where}' layer {layer} lists head {h} twice; list each head once")
            seen.add(h)
            heads.append(HeadRef(int(layer), h))
    return sorted(set(heads))


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


#: Fields a plan file may hold, and the ``model`` keys it may record.
PLAN_FIELDS = ("schema_version", "package_version", "kind", "created", "model", "gqa_mode", "targets", "frozen_in_zone",
               "rules", "reasons", "n_targets", "warnings")  # warnings: written from model.attention, not read back
MODEL_KEYS = {"name": str, "source": str, "family": str, "model_type": str, "num_layers": int, "num_heads": int,
              "num_kv_heads": int, "head_dim": int, "hidden_size": int, "weights_fingerprint": str,
              "attention": dict}  # attention: the family's declared traits (windows, soft-caps, ...), recorded only
#: Keys compared with the model a plan is applied to, in the order differences are named.
IDENTITY_KEYS = ("family", "model_type", "num_layers", "num_heads", "num_kv_heads", "hidden_size", "head_dim", "weights_fingerprint")


def _check_model_doc(model) -> dict:
    if not isinstance(model, dict):
        raise HeadsurgeonError(f"plan field 'model' must be a mapping like {{name: ..., num_layers: 30}}, not {_short(model)}; fix the plan file")
    for key, value in model.items():
        if key not in MODEL_KEYS:
            raise HeadsurgeonError(f"plan field 'model' has unknown key {key!r}; known: {', '.join(MODEL_KEYS)}")
        want = MODEL_KEYS[key]
        ok = value is None or (_is_int(value) and value > 0 if want is int else isinstance(value, want))
        if not ok:
            kind = {int: "a whole number > 0", str: "text", dict: "a mapping"}[want]
            raise HeadsurgeonError(f"plan field 'model.{key}' is {_short(value)}, not {kind}; fix it")
    return model


def _describe_model(m: dict) -> str:
    shape = f"{m.get('num_layers')} layers x {m.get('num_heads')} heads"
    weights = f", weights {m['weights_fingerprint']}" if m.get("weights_fingerprint") else ""
    return f"{m.get('name') or 'unnamed'} ({m.get('family') or '?'}, {shape}{weights})"


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
            raise HeadsurgeonError(f"gqa_mode must be one of {', '.join(GQA_MODES)}, not '{self.gqa_mode}'; fix --gqa or the plan file")
        self.targets = sorted(set(self.targets))
        self.frozen_in_zone = sorted(set(self.frozen_in_zone) - set(self.targets))

    @property
    def warnings(self) -> list[str]:
        """The model family's surgery warnings (OLMo 2: surgery is not local), from ``model.attention``."""
        return list(((self.model or {}).get("attention") or {}).get("warnings") or [])

    def zone(self) -> list[HeadRef]:
        return sorted(set(self.targets) | set(self.frozen_in_zone))

    def model_differences(self, model: dict) -> list[str]:
        """How ``model`` (a ``describe()`` dict) differs from the model this plan was made for.

        Only what both record is compared: a hand-written plan without ``model`` keys, or a model
        without a weights fingerprint (an in-memory one), is not refused for what it lacks.
        """
        out = []
        for key in IDENTITY_KEYS:
            mine, theirs = self.model.get(key), model.get(key)
            if mine is not None and theirs is not None and mine != theirs:
                out.append(f"{key} {mine} in the plan, {theirs} here")
        return out

    def check_model(self, model: dict, *, allow_other_model: bool = False) -> list[str]:
        """Refuse a model other than the one the plan was made for (family, shape or weights).

        ``allow_other_model`` turns the refusal into returned notes (e.g. applying a plan to the
        model's own fine-tuned copy). Returns the differences found.
        """
        diffs = self.model_differences(model)
        if diffs and not allow_other_model:
            raise HeadsurgeonError(
                f"this plan was made for {_describe_model(self.model)}, not for {_describe_model(model)}: {'; '.join(diffs[:3])}; "
                "make a plan from this model's diagnosis, or pass --allow-other-model to apply it anyway"
            )
        return diffs

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
    def from_dict(cls, doc: dict, *, where: str = "the plan") -> SurgeryPlan:
        """A plan from its file form, strictly: unknown fields, wrong types and non-integer heads
        are refused with one line naming the field (``where`` names the file in messages)."""
        if not isinstance(doc, dict) or doc.get("kind", "plan") != "plan":
            raise HeadsurgeonError(f"{where} is not a surgery plan (kind: plan); make one with `headsurgeon plan`")
        unknown = [k for k in doc if k not in PLAN_FIELDS]
        if unknown:
            raise HeadsurgeonError(f"{where} has unknown field {unknown[0]!r}; a plan holds {', '.join(PLAN_FIELDS)}")
        version, readable = doc.get("schema_version"), DOCUMENT_VERSIONS["plan"]
        if version is not None and str(version).split(".")[0] != readable.split(".")[0]:
            raise HeadsurgeonError(f"{where} has schema version '{version}', this headsurgeon reads {readable}; make the plan again")
        rules, reasons = doc.get("rules", []), doc.get("reasons", {})
        if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
            raise HeadsurgeonError(f"{where}: field 'rules' must be a list of texts, not {_short(rules)}; fix or delete it")
        if not isinstance(reasons, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in reasons.items()):
            raise HeadsurgeonError(f"{where}: field 'reasons' must map head names to texts, not {_short(reasons)}; fix or delete it")
        for key in ("gqa_mode", "created", "package_version"):
            if key in doc and not isinstance(doc[key], str):
                raise HeadsurgeonError(f"{where}: field '{key}' must be text, not {_short(doc[key])}; fix it")
        try:
            plan = cls(
                model=_check_model_doc(doc.get("model", {})),
                targets=_from_layer_map(doc.get("targets"), "targets"),
                frozen_in_zone=_from_layer_map(doc.get("frozen_in_zone"), "frozen_in_zone"),
                gqa_mode=doc.get("gqa_mode", "query"),
                rules=list(rules),
                reasons=dict(reasons),
                created=doc.get("created", now_iso()),
            )
        except HeadsurgeonError as exc:
            raise HeadsurgeonError(f"{where}: {exc}") from None
        n = doc.get("n_targets")
        if n is not None and (not _is_int(n) or n != len(plan.targets)):
            raise HeadsurgeonError(f"{where}: n_targets is {_short(n)} but targets lists {len(plan.targets)} heads; fix n_targets or delete it")
        return plan

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
        """Read a plan file strictly: UTF-8 only, no repeated keys (JSON or YAML), see :meth:`from_dict`."""
        p = Path(path).expanduser()
        if p.is_dir():
            raise HeadsurgeonError(f"plan file {p} is a directory; pass the plan file written by `headsurgeon plan`")
        if not p.is_file():
            raise HeadsurgeonError(f"plan file {p} does not exist; make one with `headsurgeon plan`")
        yaml_file = p.suffix in (".yaml", ".yml")
        text = read_utf8(p, what="plan file")
        try:
            doc = load_yaml_strict(text) if yaml_file else load_json_strict(text)
        except DuplicateKeyError as exc:
            raise HeadsurgeonError(f"plan file {p} repeats the key {exc.key!r}{exc.where}; keep one entry per key (merge the lists)") from None
        except Exception as exc:  # noqa: BLE001 - json and yaml raise their own types; the message is enough
            detail = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            raise HeadsurgeonError(f"plan file {p} does not parse as {'YAML' if yaml_file else 'JSON'} ({detail}); fix its syntax") from None
        return cls.from_dict(doc, where=f"plan file {p}")
