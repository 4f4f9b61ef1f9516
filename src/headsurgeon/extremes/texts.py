"""More real text per domain from files many Linux machines already have (offline).

Two built-in prompts per domain make per-domain means thin. Where the machine has them we add
deterministic chunks of real text: long entries of the ``fortunes`` package as *prose*, plain
paragraphs of the Python documentation sources (Debian ``python3.11-doc``) as *technical*, and
top-level functions and classes of the Python standard library's own source as *code*. Missing
sources simply add nothing; the result records which source every domain used and how many
tokens it had. Mathematics, multilingual and repetitive text have no such local source.
"""

from __future__ import annotations

import re
import sysconfig
from collections.abc import Callable
from pathlib import Path

FORTUNES_DIR = Path("/usr/share/games/fortunes")
PYTHON_DOC_DIRS = sorted(Path("/usr/share/doc").glob("python3*/html/_sources/library"))


def _spread(items: list, n: int) -> list:
    """``n`` items taken evenly across ``items`` (deterministic variety, not the first n)."""
    if n <= 0 or not items:
        return []
    if len(items) <= n:
        return list(items)
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def fortune_chunks(n: int, *, min_chars: int = 400, max_chars: int = 1000, folder: Path = FORTUNES_DIR) -> list[str]:
    """Long fortunes (stories, anecdotes, quoted passages), whitespace normalised."""
    if not folder.is_dir():
        return []
    entries = []
    for f in sorted(p for p in folder.iterdir() if p.is_file() and not p.suffix):
        try:
            text = f.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for entry in text.split("\n%\n"):
            flat = " ".join(entry.split())
            if min_chars <= len(flat) <= max_chars and flat.count("|") < 3:  # skip ASCII-art tables
                entries.append(flat)
    return _spread(entries, n)


_RST_MARKUP = re.compile(r"^(\.\. |[=\-~^*#]{3,}|\s|:|>>>|\*|\d+\.)")


def python_doc_chunks(n: int, *, chars: int = 800, folders: list[Path] = PYTHON_DOC_DIRS) -> list[str]:
    """Plain-prose paragraphs of the Python library reference, joined to about ``chars`` characters."""
    files = sorted(p for d in folders for p in d.glob("*.rst.txt"))
    chunks = []
    for f in _spread(files, 4 * n):
        paragraphs = [" ".join(p.split()) for p in f.read_text(encoding="utf-8", errors="replace").split("\n\n")]
        prose = [p for p in paragraphs if len(p) > 120 and not _RST_MARKUP.match(p)]
        chunk = ""
        for p in prose:
            chunk = f"{chunk} {p}".strip()
            if len(chunk) >= chars:
                break
        if len(chunk) >= chars // 2:
            chunks.append(_strip_roles(chunk))
        if len(chunks) >= n:
            break
    return chunks


def _strip_roles(text: str) -> str:
    """``:func:`len``` -> ``len``: the rendered reading of Sphinx roles."""
    return re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text).replace("``", "")


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
