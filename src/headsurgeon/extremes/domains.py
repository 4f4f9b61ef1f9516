"""The input domains of the active-dormant study: built-in, locally extended, and user files."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.prompts import DOMAINS, Prompt, builtin_prompts, read_prompt_file

from .texts import LOCAL_SOURCES


@dataclass
class Domain:
    """A named set of prompts and where they came from (``sources``, e.g. ``builtin``, ``fortunes``)."""

    name: str
    prompts: list[Prompt]
    sources: list[str] = field(default_factory=list)


def parse_domain_option(values: Sequence[str]) -> dict[str, str]:
    """``["name=path", ...]`` (the CLI's ``--domain``) -> ``{name: path}``."""
    out: dict[str, str] = {}
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise HeadsurgeonError(f"--domain expects name=path, not '{v}'; write e.g. --domain legal=contracts.txt")
        if name.strip() in out:
            raise HeadsurgeonError(f"domain '{name.strip()}' is given twice; use one file per domain name")
        out[name.strip()] = path.strip()
    return out


def build_domains(
    domains: Sequence[str] | None = None,
    domain_files: Mapping[str, str | Path] | None = None,
    *,
    local_text: int = 4,
) -> list[Domain]:
    """The domains to measure.

    ``domains``: built-in domain names (default: all six; ``[]`` for none). ``domain_files``:
    ``{name: path}`` of user prompt files (read by :func:`headsurgeon.prompts.read_prompt_file`;
    every prompt is counted under ``name``). ``local_text``: extra chunks of local real text
    added to the prose, technical and code domains where available (0 turns this off).
    """
    names = list(DOMAINS) if domains is None else list(domains)
    unknown = [d for d in names if d not in DOMAINS]
    if unknown:
        raise HeadsurgeonError(f"unknown built-in domain(s) {', '.join(unknown)}; choose from {', '.join(DOMAINS)} or pass --domain name=path")
    if len(set(names)) != len(names):
        raise HeadsurgeonError("a built-in domain is listed twice; list each once")
    files = dict(domain_files or {})
    clash = sorted(set(files) & set(names))
    if clash:
        raise HeadsurgeonError(f"domain name(s) {', '.join(clash)} are built in; give your file another name or drop the built-in domain")
    if local_text < 0:
        raise HeadsurgeonError(f"--local-text must be >= 0, not {local_text}; pass 0 to turn it off")
    out = []
    for name in names:
        prompts, sources = builtin_prompts([name]), ["builtin"]
        if local_text and name in LOCAL_SOURCES:
            label, make = LOCAL_SOURCES[name]
            chunks = make(local_text)
            prompts += [Prompt(f"{label}-{i}", name, text) for i, text in enumerate(chunks)]
            if chunks:
                sources.append(f"{label} x{len(chunks)}")
        out.append(Domain(name, prompts, sources))
    for name, path in files.items():
        prompts = [Prompt(p.name, name, p.text) for p in read_prompt_file(path, domain=name)]
        out.append(Domain(name, prompts, [str(path)]))
    if len(out) == 0:
        raise HeadsurgeonError("no domains selected; keep some built-in domains or pass --domain name=path")
    return out
