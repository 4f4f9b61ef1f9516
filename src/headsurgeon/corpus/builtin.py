"""Built-in offline English corpora, read from Debian packages.

Both exist so the demo, the tests and a user without network have real English text:

* ``python-docs`` — the reST sources of the Python 3.11 documentation (Debian ``python3.11-doc``),
  one document per page, stripped to prose by :func:`headsurgeon.corpus.rest.rest_to_prose`.
  Technical English: a good *training* distribution for surgery.
* ``fortunes`` — the quotations of Debian ``fortunes`` (one document per entry; entries are
  separated by ``%`` lines). Short, varied, literary English: a *different* distribution for
  the "held-out text of another kind" evaluation.

The package locations are module attributes so tests can point them at fixtures.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.strict import read_utf8

from .rest import rest_to_prose
from .spec import Document, entry_id

PYTHON_DOCS_DIR = Path("/usr/share/doc/python3.11/html/_sources")
FORTUNES_DIR = Path("/usr/share/games/fortunes")

_OVERSTRIKE = re.compile(r"[^\x08\n]\x08")  # "_\bx" (underlined x) and "x\bx" (bold x) in old fortune files
_ENTRY_SEPARATOR = re.compile(r"(?m)^%[ \t]*$")


def _missing(name: str, package: str, where: Path) -> HeadsurgeonError:
    return HeadsurgeonError(
        f"the built-in corpus '{name}' needs the Debian package {package} ({where} is missing); "
        f"run `apt-get install {package}`, or pass your own text file, folder or .jsonl as the corpus"
    )


def python_docs_files() -> list[Path]:
    """The documentation pages, sorted by path (raises if the package is not installed)."""
    files = sorted(PYTHON_DOCS_DIR.rglob("*.rst.txt")) if PYTHON_DOCS_DIR.is_dir() else []
    if not files:
        raise _missing("python-docs", "python3.11-doc", PYTHON_DOCS_DIR)
    return files


def fortune_files() -> list[Path]:
    """The fortune files, sorted: data files only (no ``.dat`` indexes, no ``.u8`` links, no
    sub-folders such as the offensive ``off/`` set)."""
    files = []
    if FORTUNES_DIR.is_dir():
        for p in sorted(FORTUNES_DIR.iterdir()):
            if p.is_file() and not p.is_symlink() and p.suffix not in (".dat", ".u8") and not p.name.startswith("."):
                files.append(p)
    if not files:
        raise _missing("fortunes", "fortunes", FORTUNES_DIR)
    return files


def python_docs_documents() -> Iterator[Document]:
    for path in python_docs_files():
        rel = path.relative_to(PYTHON_DOCS_DIR).as_posix()
        yield Document(id=f"python-docs/{rel}", text=rest_to_prose(read_utf8(path, what="text file")))


def split_fortunes(text: str) -> list[str]:
    """Entries of one fortune file: split on ``%`` lines, overstrike removed, blank ends trimmed."""
    while True:  # "___\b\b\bBODY" needs several passes: each removes one "char, backspace" pair
        stripped = _OVERSTRIKE.sub("", text)
        if stripped == text:
            break
        text = stripped
    text = text.replace("\x08", "")
    entries = []
    for chunk in _ENTRY_SEPARATOR.split(text):
        lines = [line.rstrip() for line in chunk.strip("\n").splitlines()]
        entry = "\n".join(lines).strip("\n")
        if entry.strip():
            entries.append(entry)
    return entries


def fortunes_documents() -> Iterator[Document]:
    for path in fortune_files():
        for entry in split_fortunes(read_utf8(path, what="text file")):
            yield Document(id=entry_id(f"fortunes/{path.name}", entry), text=entry)


BUILTIN_READERS = {"python-docs": (python_docs_documents, python_docs_files), "fortunes": (fortunes_documents, fortune_files)}
