"""Small I/O helpers shared by every writer: atomic writes, versioned-JSON reading, output folders."""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from headsurgeon._version import SCHEMA_VERSION
from headsurgeon.errors import HeadsurgeonError


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` so that ``path`` is either the old file or the complete new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates the file 0600; give the result the mode a plain open() would (0666 & ~umask)
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, doc: dict) -> Path:
    atomic_write_text(path, json.dumps(doc, indent=1))
    return Path(path)


def read_json_document(path: str | Path, *, kind: str | None = None) -> dict:
    """Read a headsurgeon JSON document, checking it exists, parses and has a compatible schema."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise HeadsurgeonError(f"{p} does not exist; pass the JSON file headsurgeon wrote")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise HeadsurgeonError(f"{p} is not valid JSON; pass a file headsurgeon wrote") from None
    version = str(doc.get("schema_version", ""))
    if version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        raise HeadsurgeonError(f"{p} has schema version '{version}', this headsurgeon reads {SCHEMA_VERSION}; regenerate it")
    if kind and doc.get("kind") != kind:
        raise HeadsurgeonError(f"{p} is a '{doc.get('kind')}' document, expected '{kind}'")
    return doc


def ensure_output_dir(path: str | Path) -> Path:
    """Create ``path`` if needed and check it is writable (one-line error otherwise)."""
    p = Path(path).expanduser()
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=p, prefix=".write-test-", delete=True)
        probe.close()
    except OSError as exc:
        raise HeadsurgeonError(f"cannot write to output directory {p} ({exc.strerror or exc}); choose a writable --out") from None
    return p
