"""Option rules in one place: every configuration field says what values it takes.

A field of a configuration dataclass is declared with :func:`option`, which puts its help text
and its rule side by side in the field's metadata::

    lr: float = option(5e-5, "AdamW learning rate", above=0)
    clip_norm: float = option(1.0, "gradient clip norm (0: off)", min=0)
    precision: str = option("bf16", "training precision", choices=("fp32", "bf16", "fp16"))

:func:`check_fields` (called from each dataclass's ``__post_init__``) refuses a value that breaks
its rule with one line naming the CLI flag, the rule and the value. Float fields are ``finite``
unless declared otherwise, so NaN and infinity are refused everywhere: the comparisons
``value <= 0`` that guarded options before let NaN through (every comparison with NaN is false).
The CLI (``cli/main.py``) also refuses NaN/inf for every float option while parsing, so a
command stops before any work however its options reach the library; :func:`check_value` applies
the same rules to a plain function argument. Help text for generated CLI options comes from
:func:`help_text`, which appends the rule in words.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from dataclasses import MISSING, Field, field, fields
from typing import Any

from headsurgeon.errors import HeadsurgeonError

_RULE_KEYS = ("min", "max", "above", "below", "choices", "finite", "integer", "flag", "hint")


def option(
    default: Any = MISSING,
    help: str = "",  # noqa: A002 - "help" reads best here, as in typer
    *,
    default_factory: Any = MISSING,
    min: float | None = None,  # noqa: A002 - inclusive lower bound
    max: float | None = None,  # noqa: A002 - inclusive upper bound
    above: float | None = None,  # exclusive lower bound
    below: float | None = None,  # exclusive upper bound
    choices: Iterable[Any] | None = None,
    finite: bool = True,
    integer: bool = False,
    flag: str | None = None,
    hint: str | None = None,
) -> Any:
    """A dataclass field carrying its help text and its rule (see the module docstring).

    ``flag`` is the CLI name used in messages (default ``--`` + the field name with dashes; a
    flag without dashes is a ``--set key=value`` key);
    ``hint`` replaces the default "what to do" half of the message. ``integer`` refuses floats
    and booleans (use it for ``int`` fields: dataclasses do not check types).
    """
    meta = {"help": help, "rule": {"min": min, "max": max, "above": above, "below": below,
                                   "choices": tuple(choices) if choices is not None else None,
                                   "finite": finite, "integer": integer, "flag": flag, "hint": hint}}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def flag_name(f: Field | str, rule: dict | None = None) -> str:
    name = f if isinstance(f, str) else f.name
    return (rule or {}).get("flag") or "--" + name.replace("_", "-")


def describe_rule(rule: dict) -> str:
    """The rule in words, e.g. ``a finite number > 0`` or ``one of fp32, bf16, fp16``."""
    if rule.get("choices") is not None:
        return "one of " + ", ".join(str(c) for c in rule["choices"])
    parts = []
    for key, sign in (("above", ">"), ("min", ">="), ("below", "<"), ("max", "<=")):
        if rule.get(key) is not None:
            parts.append(f"{sign} {rule[key]:g}")
    kind = "a whole number" if rule.get("integer") else ("a finite number" if rule.get("finite", True) else "a number")
    return kind + (" " + " and ".join(parts) if parts else "")


def rule_problem(value: Any, rule: dict, *, optional: bool = False) -> str | None:
    """Why ``value`` breaks ``rule`` (``None``: it does not). ``optional`` lets ``None`` through."""
    if value is None:
        return None if optional else "a value is required"
    if rule.get("choices") is not None:
        return None if value in rule["choices"] else "not one of the choices"
    numeric = any(rule.get(k) is not None for k in ("min", "max", "above", "below")) or rule.get("integer")
    if not numeric and not isinstance(value, float):
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return "not a number"
    if rule.get("integer") and not isinstance(value, numbers.Integral):
        return "not a whole number"
    if rule.get("finite", True) and not math.isfinite(value):
        return "not finite"
    if rule.get("above") is not None and not value > rule["above"]:
        return "too small"
    if rule.get("min") is not None and not value >= rule["min"]:
        return "too small"
    if rule.get("below") is not None and not value < rule["below"]:
        return "too large"
    if rule.get("max") is not None and not value <= rule["max"]:
        return "too large"
    return None


def _fail(flag: str, value: Any, rule: dict, default: Any = None) -> HeadsurgeonError:
    # a flag without dashes is a ``--set key=value`` key (the toy lab's options)
    shown = flag if flag.startswith("-") else f"--set {flag}="
    example = (f"e.g. {shown}{'' if shown.endswith('=') else ' '}{default}" if default not in (None, MISSING) and not isinstance(default, bool)
               else f"fix {shown.rstrip('=')}")
    hint = rule.get("hint") or (f"pass one of them to {shown.rstrip('=')}" if rule.get("choices") is not None else example)
    return HeadsurgeonError(f"{flag} must be {describe_rule(rule)}, not {value!r}; {hint}")


def check_value(name: str, value: Any, *, optional: bool = False, **rule: Any) -> Any:
    """Check a plain argument against a rule given inline (same keywords as :func:`option`)."""
    full = {k: rule.get(k) for k in _RULE_KEYS}
    full["finite"] = rule.get("finite", True)
    if rule.get("choices") is not None:
        full["choices"] = tuple(rule["choices"])
    if rule_problem(value, full, optional=optional):
        raise _fail(flag_name(name, full), value, full)
    return value


def check_fields(obj: Any) -> None:
    """Refuse the first field of dataclass ``obj`` whose value breaks its :func:`option` rule.

    Fields declared without :func:`option` are checked for finiteness when they hold a float,
    so no configuration anywhere carries a NaN or an infinity.
    """
    for f in fields(obj):
        value = getattr(obj, f.name)
        rule = f.metadata.get("rule")
        if rule is None:
            if isinstance(value, float) and not math.isfinite(value):
                raise _fail(flag_name(f), value, {"finite": True})
            continue
        optional = "None" in str(f.type) or "Optional" in str(f.type)
        if rule_problem(value, rule, optional=optional):
            raise _fail(flag_name(f, rule), value, rule, f.default)


def field_rules(cls: type) -> dict[str, dict]:
    """``{field name: {"help": ..., "rule": ...}}`` for every field of ``cls`` declared with :func:`option`."""
    return {f.name: dict(f.metadata) for f in fields(cls) if "rule" in f.metadata}


def help_text(cls: type, name: str) -> str:
    """A field's help text with its rule appended, for generated CLI options."""
    f = next((f for f in fields(cls) if f.name == name), None)
    if f is None:
        raise KeyError(f"{cls.__name__} has no field {name!r}")
    helptext = f.metadata.get("help", "")
    rule = f.metadata.get("rule")
    if rule is None:
        return helptext
    words = describe_rule(rule)
    return f"{helptext} ({words})" if words not in ("a finite number", "a number") else helptext
