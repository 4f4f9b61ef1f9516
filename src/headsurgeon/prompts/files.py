"""Reading user prompts: plain text (one prompt per paragraph, separated by blank lines) or
JSONL (``{"text": ..., "name": ..., "domain": ...}`` per line)."""

from __future__ import annotations

import json
from pathlib import Path

from headsurgeon.errors import HeadsurgeonError

from .builtin import Prompt


def read_prompt_file(path: str | Path, *, domain: str | None = None) -> list[Prompt]:
    p = Path(path).expanduser()
    if not p.is_file():
        raise HeadsurgeonError(f"prompt file {p} does not exist; pass a text file (blank-line separated prompts) or JSONL")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HeadsurgeonError(f"cannot read prompt file {p} ({type(exc).__name__}); pass a UTF-8 text or JSONL file") from None
    dom = domain or p.stem
    prompts: list[Prompt] = []
    if p.suffix == ".jsonl":
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                body = rec["text"] if isinstance(rec, dict) else None
            except (json.JSONDecodeError, KeyError):
                body = None
            if not isinstance(body, str):
                raise HeadsurgeonError(f"{p} line {i} is not a JSON object with a \"text\" string; fix that line")
            prompts.append(Prompt(rec.get("name", f"{p.stem}-{len(prompts)}"), rec.get("domain", dom), body))
    else:
        for chunk in text.split("\n\n"):
            if chunk.strip():
                prompts.append(Prompt(f"{p.stem}-{len(prompts)}", dom, chunk.strip()))
    if not prompts:
        raise HeadsurgeonError(f"prompt file {p} holds no prompts; write at least one non-empty paragraph")
    return prompts
