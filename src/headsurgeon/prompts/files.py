"""Reading user prompts: plain text (one prompt per paragraph, separated by blank lines) or
JSONL (``{"text": ..., "name": ..., "domain": ...}`` per line)."""

from __future__ import annotations

from pathlib import Path

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.strict import decode_utf8, load_json_strict

from .builtin import Prompt


def read_prompt_file(path: str | Path, *, domain: str | None = None) -> list[Prompt]:
    p = Path(path).expanduser()
    if p.is_dir():
        raise HeadsurgeonError(f"prompt file {p} is a directory; pass a text file (blank-line separated prompts) or JSONL")
    if not p.is_file():
        raise HeadsurgeonError(f"prompt file {p} does not exist; pass a text file (blank-line separated prompts) or JSONL")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise HeadsurgeonError(f"cannot read prompt file {p} ({exc.strerror or exc}); check its permissions") from None
    text = decode_utf8(data, p, what="cannot read prompt file")  # the one text policy: UTF-8 or refused (headsurgeon.strict)
    dom = domain or p.stem
    prompts: list[Prompt] = []
    if p.suffix == ".jsonl":
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = load_json_strict(line)
                body = rec["text"] if isinstance(rec, dict) else None
            except (ValueError, KeyError):
                body = None
            if not isinstance(body, str):
                raise HeadsurgeonError(f"{p} line {i} is not a JSON object with a \"text\" string (and no repeated keys); fix that line")
            name, where = rec.get("name", f"{p.stem}-{len(prompts)}"), rec.get("domain", dom)
            if not isinstance(name, str) or not isinstance(where, str):
                raise HeadsurgeonError(f"{p} line {i}: \"name\" and \"domain\" must be strings; fix that line")
            prompts.append(Prompt(name, where, body))
    else:
        for chunk in text.split("\n\n"):
            if chunk.strip():
                prompts.append(Prompt(f"{p.stem}-{len(prompts)}", dom, chunk.strip()))
    if not prompts:
        raise HeadsurgeonError(f"prompt file {p} holds no prompts; write at least one non-empty paragraph")
    return prompts
