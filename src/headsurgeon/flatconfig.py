"""What the flat, typed run configs (the toy's ``ToyConfig``, the lab's ``LabConfig``) share.

Each such config is one frozen dataclass whose fields carry their help text in
``metadata["help"]``, and a table of named presets ``{name: (description, config)}``. Changing
a field (``replace``), parsing ``--set key=value`` by the field's declared type, listing the
fields with their help and picking a preset work the same for every one of them, so they live
here once; ``what`` ("toy", "lab") only names the config in the messages.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from headsurgeon.errors import HeadsurgeonError

C = TypeVar("C")

_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def field_help(cls: type) -> dict[str, str]:
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}


def replace_fields(config: C, what: str, **changes: Any) -> C:
    """A copy of ``config`` with ``changes`` applied (validated again by its ``__post_init__``)."""
    unknown = set(changes) - set(field_names(type(config)))
    if unknown:
        raise HeadsurgeonError(f"unknown {what} config key(s) {sorted(unknown)}; known: {', '.join(field_names(type(config)))}")
    return dataclasses.replace(config, **changes)


def _items(raw: str, kind: type) -> tuple:
    return tuple(kind(p) for p in raw.replace(" ", "").split(",") if p)


def parse_override(cls: type, text: str, what: str, example: str) -> tuple[str, Any]:
    """``key=value`` -> a typed pair by the field's declared type (``None``/``none`` for optional
    fields, true/false for booleans, comma-separated lists for tuples); ``example`` goes in the hint."""
    if "=" not in text:
        raise HeadsurgeonError(f"override {text!r} is not key=value; write e.g. {example}")
    key, raw = (s.strip() for s in text.split("=", 1))
    types = {f.name: str(f.type) for f in dataclasses.fields(cls)}  # annotations are strings here
    if key not in types:
        raise HeadsurgeonError(f"unknown {what} config key {key!r}; known: {', '.join(field_names(cls))}")
    kind = types[key]
    try:
        if "None" in kind and raw.lower() in ("none", ""):
            return key, None
        if kind.startswith("bool"):
            if raw.lower() not in _TRUE + _FALSE:
                raise ValueError(raw)
            return key, raw.lower() in _TRUE
        if kind.startswith("tuple[int"):
            return key, _items(raw, int)
        if kind.startswith("tuple[str"):
            return key, _items(raw, str)
        if kind.startswith("int"):
            return key, int(raw)
        if kind.startswith("float"):
            return key, float(raw)
    except ValueError:
        raise HeadsurgeonError(f"{key}={raw!r} is not a valid {kind}; fix the value") from None
    return key, raw


def pick_preset(presets: dict[str, tuple[str, C]], name: str, what: str, **changes: Any) -> C:
    """The named preset's config with ``changes`` applied."""
    if name not in presets:
        raise HeadsurgeonError(f"unknown {what} preset {name!r}; choose one of {', '.join(presets)}")
    base = presets[name][1]
    return replace_fields(base, what, **changes) if changes else base
