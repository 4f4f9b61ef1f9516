"""Strict reading of the files users hand to headsurgeon: one text policy, no silent guesses.

**Text policy** (prompt files, corpus files and folders, plans, toy text, JSON documents): every
text file must be UTF-8. A file that is not is refused with its name and the offset of the first
byte that does not decode, never read with replacement characters. A leading byte-order mark is
dropped. The same rule holds for the system text headsurgeon finds by itself (Debian's fortunes
and Python documentation, all UTF-8).

**Structured files** (plans in JSON or YAML, JSON documents): a key repeated in one mapping is
refused (both parsers would silently keep the last value and drop the first); YAML is read with
the safe loader, so no file can construct Python objects, and nothing is ever unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path

from headsurgeon.errors import HeadsurgeonError


class DuplicateKeyError(ValueError):
    """A mapping repeats ``key`` (``where``: e.g. " (line 4)")."""

    def __init__(self, key, where: str = ""):
        super().__init__(f"repeated key {key!r}{where}")
        self.key, self.where = key, where


def decode_utf8(data: bytes, path: str | Path, *, what: str = "file") -> str:
    """``data`` as text under the policy above; one-line error naming ``path`` otherwise."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HeadsurgeonError(
            f"{what} {path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start} does not decode); "
            "save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None
    return text[1:] if text.startswith("\ufeff") else text


def read_utf8(path: str | Path, *, what: str = "file") -> str:
    """Read ``path`` as UTF-8 text (see the module docstring)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except IsADirectoryError:
        raise HeadsurgeonError(f"{what} {p} is a directory; pass a file") from None
    except OSError as exc:
        raise HeadsurgeonError(f"cannot read {what} {p} ({exc.strerror or exc}); check the path and its permissions") from None
    return decode_utf8(data, p, what=what)


def no_repeated_keys(pairs):
    """``object_pairs_hook`` for ``json.loads``: a repeated key raises :class:`DuplicateKeyError`."""
    out = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKeyError(key)
        out[key] = value
    return out


def _no_constants(name: str):
    raise ValueError(f"{name} is not valid JSON")


def load_json_strict(text: str):
    """``json.loads`` that refuses repeated keys and the non-JSON constants NaN / Infinity."""
    return json.loads(text, object_pairs_hook=no_repeated_keys, parse_constant=_no_constants)


def load_yaml_strict(text: str):
    """``yaml.safe_load`` that refuses a key repeated in one mapping."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        pass

    def mapping(loader, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            try:
                repeated = key in seen
            except TypeError:  # an unhashable key: let the safe loader explain it
                break
            if repeated:
                raise DuplicateKeyError(key, f" (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass
