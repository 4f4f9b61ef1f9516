"""Helpers shared by the corpus tests (imported by name: the test folders are not packages)."""

from __future__ import annotations

from pathlib import Path


def write_docs(folder: Path, texts: dict[str, str]) -> Path:
    """Write ``{relative name: text}`` under ``folder`` and return it."""
    for name, text in texts.items():
        p = folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    return folder


def marked_docs(n: int, repeat: int = 6) -> dict[str, str]:
    """``n`` documents whose every character sequence names the document (``d007.`` ...)."""
    return {f"d{i:03d}.txt": f"d{i:03d}. " * repeat for i in range(n)}
