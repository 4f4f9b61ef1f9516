"""CLI options made from the fields of a configuration dataclass (one place for name, help and rule).

A configuration field declared with :func:`headsurgeon.options.option` already carries its help
text and its rule (range, choices, whole number). :func:`config_options` turns chosen fields of
such a dataclass into typer options of a command, so ``operate`` and ``study`` no longer re-type
:class:`~headsurgeon.surgery.SurgeryConfig`'s fields: the flag is the field's (``--seq-len`` for
``seq_len``, or the rule's ``flag``), the help is the field's with its rule in words, and the
defaults shown are the presets' values (a preset decides them; the option only overrides).

The command receives what the user typed as one dict (fields not given are absent) and applies
it with :func:`apply_overrides`, i.e. ``dataclasses.replace``: the dataclass's own
``__post_init__`` then checks every rule, so a bad value is refused in exactly one place, the
library's, with its one-line message naming the flag (exit 2). The CLI adds no ranges of its own.
A field that may be ``None`` takes the word ``none`` to unset it (``--other-corpus none``,
``--max-steps none`` to let ``--epochs`` decide under a preset that sets steps).
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, fields, replace
from types import NoneType, UnionType
from typing import Any, Optional

import typer

from headsurgeon.options import flag_name, help_text

#: What ``none`` on the command line parses to: "set this field to None" (``None`` itself means "not given").
UNSET = type("Unset", (), {"__repr__": lambda self: "UNSET"})()


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _base_type(annotation: Any) -> tuple[type, bool]:
    """``(base type, may be None)`` of a field annotation such as ``int | None``."""
    args = typing.get_args(annotation) if isinstance(annotation, UnionType) or typing.get_origin(annotation) is typing.Union else ()
    if args:
        rest = [a for a in args if a is not NoneType]
        return rest[0], len(rest) < len(args)
    return annotation, False


def _parser(base: type, flag: str) -> Callable[[str], Any]:
    """Text -> value for a field that may be ``None``: ``none`` unsets it."""

    def parse(text: str) -> Any:
        if text.strip().lower() == "none":
            return UNSET
        if base is str:
            return text
        try:
            return base(text)
        except ValueError:
            kind = "a whole number" if base is int else "a number"
            raise typer.BadParameter(f"{flag} takes {kind} or 'none', not {text!r}") from None

    return parse


def _option(cls: type, name: str, *, presets: Mapping[str, Any] | None, note: str, panel: str | None) -> inspect.Parameter:
    f = next(f for f in fields(cls) if f.name == name)
    base, nullable = _base_type(typing.get_type_hints(cls)[name])
    rule = f.metadata.get("rule") or {}
    flag = flag_name(f, rule)
    text = help_text(cls, name)
    first = text.split(" ", 1)[0]
    if first[:1].islower() and not first.endswith(":") and not any(c.isdigit() or c == "_" for c in first):  # "fp32 | bf16", "save_pretrained" stay as written
        text = text[:1].upper() + text[1:]
    text += "."
    if note:
        text += " " + note
    if presets:
        # words, not "[...]": typer's rich help would take square brackets for markup and drop them
        text += " Preset defaults: " + " · ".join(f"{p} {_show(getattr(c, name))}" for p, c in presets.items()) + "."
    elif f.default is not MISSING:
        text += f" Default: {_show(f.default)}."
    kw: dict = {"help": text, "rich_help_panel": panel, "show_default": False}
    if base is bool:
        decls = (f"{flag}/--no-{flag[2:]}",)
    else:
        decls = (flag,)
        if nullable:
            kw.update(parser=_parser(base, flag), metavar=f"{'INTEGER' if base is int else base.__name__.upper()}|none")
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, *decls, **kw), annotation=Optional[base])


def config_fields(cls: type, *, exclude: Iterable[str] = ()) -> list[str]:
    """Names of ``cls``'s fields declared with :func:`~headsurgeon.options.option`, in order, minus ``exclude``."""
    skip = set(exclude)
    return [f.name for f in fields(cls) if "rule" in f.metadata and f.name not in skip]


def config_options(cls: type, names: Iterable[str], *, into: str, presets: Callable[[], Mapping[str, Any]] | None = None,
                   notes: Mapping[str, str] | None = None, panel: str | None = None):
    """Decorator: add an option per field ``names`` of dataclass ``cls`` to a typer command.

    The command declares a parameter ``into`` (left out of the CLI); it receives
    ``{field: value}`` for the options given (``UNSET`` for ``none``). ``presets()``: the named
    configurations whose values the help shows as defaults. ``notes``: a command's own words
    added to a field's help (what the field means in that command).
    """
    names = list(names)

    def decorate(command):
        sig = inspect.signature(command)
        own = [p for p in sig.parameters.values() if p.name != into]
        if into not in sig.parameters:
            raise TypeError(f"{command.__name__} has no parameter {into!r} for the {cls.__name__} options")
        clash = {p.name for p in own} & set(names)
        if clash:
            raise TypeError(f"{command.__name__} already has parameters {sorted(clash)}")
        shown = presets() if presets else None
        added = [_option(cls, n, presets=shown, note=(notes or {}).get(n, ""), panel=panel) for n in names]
        params = sorted(own + added, key=lambda p: p.kind)  # the generated (keyword-only) after the command's own, in field order

        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            values = {n: kwargs.pop(n, None) for n in names}
            return command(*args, **kwargs, **{into: {n: v for n, v in values.items() if v is not None}})

        wrapper.__signature__ = sig.replace(parameters=params)
        return wrapper

    return decorate


def apply_overrides(config, overrides: Mapping[str, Any]):
    """``config`` with the fields the user gave replaced; its ``__post_init__`` checks every rule."""
    if not overrides:
        return config
    return replace(config, **{k: None if v is UNSET else v for k, v in overrides.items()})


def markdown_table(cls: type, names: Iterable[str], presets: Mapping[str, Any]) -> str:
    """The options of ``names`` as a Markdown table with each preset's value (docs/cli.md holds it; a test compares)."""
    hints = typing.get_type_hints(cls)
    lines = ["| option | field: meaning (rule) | " + " | ".join(presets) + " |", "|---|---|" + "---|" * len(presets)]
    for name in names:
        f = next(f for f in fields(cls) if f.name == name)
        flag = flag_name(f, f.metadata.get("rule"))
        if _base_type(hints[name])[0] is bool:
            flag = f"{flag} / --no-{flag[2:]}"
        words = help_text(cls, name).replace("|", "\\|")
        lines.append(f"| `{flag}` | `{name}`: {words} | " + " | ".join(_show(getattr(c, name)) for c in presets.values()) + " |")
    return "\n".join(lines) + "\n"
