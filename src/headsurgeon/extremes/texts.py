"""More real text per domain from files many Linux machines already have (offline).

Two built-in prompts per domain make per-domain means thin. Where the machine has them we add
deterministic chunks of real text: long entries of the ``fortunes`` package as *prose*, prose
paragraphs of the Python library reference (Debian ``python3.11-doc``) as *technical* (both
read through :mod:`headsurgeon.corpus.builtin`), and
top-level functions and classes of the Python standard library's own source as *code*. Missing
sources simply add nothing; the result records which source every domain used and how many
tokens it had. Mathematics, multilingual and repetitive text have no such local source.
"""

from __future__ import annotations

import sysconfig
from collections.abc import Callable
from pathlib import Path

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.strict import read_utf8


def _spread(items: list, n: int) -> list:
    """``n`` items taken evenly across ``items`` (deterministic variety, not the first n)."""
    if n <= 0 or not items:
        return []
    if len(items) <= n:
        return list(items)
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def fortune_chunks(n: int, *, min_chars: int = 400, max_chars: int = 1000) -> list[str]:
    """Long fortunes (stories, anecdotes, quoted passages), whitespace normalised; read with the
    corpus module's fortune reader."""
    from headsurgeon.corpus.builtin import fortune_files, split_fortunes

    try:
        files = fortune_files()
    except HeadsurgeonError:  # package not installed: this source adds nothing
        return []
    entries = []
    for f in files:
        for entry in split_fortunes(read_utf8(f, what="text file")):
            flat = " ".join(entry.split())
            if min_chars <= len(flat) <= max_chars and flat.count("|") < 3:  # skip ASCII-art tables
                entries.append(flat)
    return _spread(entries, n)


def python_doc_chunks(n: int, *, chars: int = 800) -> list[str]:
    """About ``chars`` characters of prose from pages of the Python library reference (the
    corpus module's reST-to-prose reader), starting after each page's title block."""
    from headsurgeon.corpus.builtin import python_docs_files
    from headsurgeon.corpus.rest import rest_to_prose

    try:
        files = [f for f in python_docs_files() if f.parent.name == "library"]
    except HeadsurgeonError:
        return []
    chunks = []
    for f in _spread(files, 3 * n):
        paragraphs = [" ".join(p.split()) for p in rest_to_prose(read_utf8(f, what="text file")).split("\n\n")]
        chunk = ""
        for p in (p for p in paragraphs if len(p) > 120):  # skip titles, "New in version", one-liners
            chunk = f"{chunk} {p}".strip()
            if len(chunk) >= chars:
                break
        if len(chunk) >= chars // 2:
            chunks.append(chunk[: 2 * chars])
        if len(chunks) >= n:
            break
    return chunks


def python_code_chunks(n: int, *, lines: int = 30) -> list[str]:
    """Top-level ``def``/``class`` blocks of the standard library's own modules (first ``lines`` lines)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in stdlib.glob("*.py") if not p.name.startswith("_"))
    chunks = []
    for f in _spread(files, 3 * n):
        try:
            src = f.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        starts = [i for i, s in enumerate(src) if s.startswith(("def ", "class "))]
        if not starts:
            continue
        start = starts[len(starts) // 2]  # a block from the middle of the module
        block = "\n".join(src[start : start + lines]).rstrip()
        if len(block) > 300:
            chunks.append(block)
        if len(chunks) >= n:
            break
    return chunks


#: Local text sources per built-in domain: (label, function(n) -> chunks).
LOCAL_SOURCES: dict[str, tuple[str, Callable[[int], list[str]]]] = {
    "prose": ("fortunes", fortune_chunks),
    "technical": ("python-doc", python_doc_chunks),
    "code": ("python-stdlib", python_code_chunks),
}
