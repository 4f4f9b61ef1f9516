"""Small I/O helpers shared by every writer: atomic writes, the JSON document envelope, output folders.

Every JSON document headsurgeon writes goes through :func:`write_document`, which puts the same
envelope on it: ``schema_version`` (the version of *that kind* of document, from
``DOCUMENT_VERSIONS``), ``package_version``, ``kind`` and ``created``. :func:`read_document`
checks the kind and the major version before anyone looks inside.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from headsurgeon._version import DOCUMENT_VERSIONS, __version__
from headsurgeon.errors import HeadsurgeonError, from_os_error, os_reason


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _create_temp(folder: Path, prefix: str) -> tuple[int, str]:
    """A new temporary file in ``folder``: the one place every writer (and the writability probe)
    creates files, so tests can simulate a read-only place or a full disk here."""
    return tempfile.mkstemp(dir=folder, prefix=prefix, suffix=".tmp")


def _write_all(fh, data: bytes) -> None:
    """Write and flush ``data`` to disk (the seam where tests simulate a disk filling up)."""
    fh.write(data)
    fh.flush()
    os.fsync(fh.fileno())


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` so that ``path`` is either the old file or the complete new one, never half.

    Every refusal of the operating system (full disk, read-only place, ``path`` a directory, a
    parent that is a file) becomes one :class:`HeadsurgeonError` line naming ``path``; the old
    file, if any, is left as it was.
    """
    path = Path(path)
    if path.is_dir():
        raise HeadsurgeonError(f"{path} is a directory, not a file; pass a file path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _create_temp(path.parent, f".{path.name}.")
    except OSError as exc:
        raise from_os_error(exc, path) from None
    try:
        # mkstemp creates the file 0600; give the result the mode a plain open() would (0666 & ~umask)
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as fh:
            _write_all(fh, data)
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise from_os_error(exc, path) from None
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, doc: dict) -> Path:
    atomic_write_text(path, json.dumps(doc, indent=1))
    return Path(path)


def check_output_file(path: str | Path, *, flag: str = "--out") -> Path:
    """Before any work: ``path`` can be written as a file (not a directory, its folder writable)."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise HeadsurgeonError(f"{flag} {p} is a directory; pass a file path (e.g. {p / 'out.json'})")
    ensure_output_dir(p.parent, flag=flag)
    return p


def envelope(kind: str, *, created: str | None = None) -> dict:
    """The keys every document starts with."""
    if kind not in DOCUMENT_VERSIONS:
        raise ValueError(f"no version registered for document kind {kind!r}")
    return {"schema_version": DOCUMENT_VERSIONS[kind], "package_version": __version__, "kind": kind, "created": created or now_iso()}


def write_document(path: str | Path, kind: str, body: dict) -> Path:
    """Write ``body`` atomically under the envelope of ``kind`` (a ``created`` in ``body`` is kept)."""
    head = envelope(kind, created=body.get("created"))
    return write_json(path, {**head, **{k: v for k, v in body.items() if k not in head}})


def read_document(path: str | Path, *, kind: str | tuple[str, ...]) -> dict:
    """Read a headsurgeon JSON document, checking it exists, parses, is of ``kind`` and of a readable version."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise HeadsurgeonError(f"{p} does not exist; pass the JSON file headsurgeon wrote")
    from headsurgeon.strict import DuplicateKeyError, no_repeated_keys

    try:
        doc = json.loads(p.read_text(encoding="utf-8"), object_pairs_hook=no_repeated_keys)
    except DuplicateKeyError as exc:
        raise HeadsurgeonError(f"{p} repeats the key {exc.key!r}; pass a file headsurgeon wrote") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise HeadsurgeonError(f"{p} is not valid JSON; pass a file headsurgeon wrote") from None
    if not isinstance(doc, dict):
        raise HeadsurgeonError(f"{p} is not a headsurgeon document (no JSON object); pass a file headsurgeon wrote")
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    found = doc.get("kind")
    if found not in kinds:
        wanted = "' or '".join(kinds)
        raise HeadsurgeonError(f"{p} is a '{found}' document, not a '{wanted}' one; pass a {kinds[0]} file")
    version, expected = str(doc.get("schema_version", "")), DOCUMENT_VERSIONS[found]
    if version.split(".")[0] != expected.split(".")[0]:
        raise HeadsurgeonError(f"{p} has {found} schema version '{version}', this headsurgeon reads {expected}; regenerate it")
    return doc


def ensure_output_dir(path: str | Path, *, flag: str = "--out") -> Path:
    """Create ``path`` if needed and check it is writable (one-line error otherwise).

    An existing file where the folder should be is named as such. The probe writes a real
    temporary file, so a read-only mount or a full disk fails here, before any work.
    """
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise HeadsurgeonError(f"cannot write to output directory {p}: it is an existing file, not a folder; choose another {flag}")
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = _create_temp(p, ".write-test-")
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        raise HeadsurgeonError(f"cannot write to output directory {p} ({os_reason(exc)}); choose a writable {flag}") from None
    return p
