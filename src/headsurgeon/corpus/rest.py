"""Light reStructuredText stripping, so Python's documentation sources read as English prose.

This is not a reST parser. It removes what a reader of the rendered page would not read as a
sentence (code and doctest blocks, directive signatures, index entries, section underlines,
tables' rules, comments, link targets) and unwraps inline markup (``:func:`~os.path.join```
becomes ``join``, ````x```` becomes ``x``). Prose inside directives (notes, function
descriptions, version notes) is kept. Paragraphs are re-joined into single lines so the model
sees running text rather than 80-column fragments.
"""

from __future__ import annotations

import re

# Directives whose whole body is code, metadata or layout, dropped with their body.
_DROP_BODY = {
    "code-block", "sourcecode", "code", "doctest", "testcode", "testsetup", "testoutput",
    "testcleanup", "productionlist", "literalinclude", "index", "toctree", "include", "highlight",
    "tabularcolumns", "moduleauthor", "sectionauthor", "module", "currentmodule", "image", "figure",
    "raw", "list-table", "csv-table", "table", "contents", "program", "audit-event", "availability",
    "parsed-literal", "math", "only", "c:namespace", "c:namespace-push", "c:namespace-pop",
}  # fmt: skip
# Admonitions whose argument (text on the directive line) is prose worth keeping.
_PROSE_ARG = {"note", "warning", "important", "caution", "tip", "hint", "attention", "danger", "error", "seealso", "impl-detail", "admonition"}
# Version notes become a short sentence; the text after the version stays.
_VERSION_WORDS = {
    "versionadded": "New in version",
    "versionchanged": "Changed in version",
    "deprecated": "Deprecated since version",
    "deprecated-removed": "Deprecated since version",
}

_DIRECTIVE = re.compile(r"^\.\.\s+([\w:-]+)::\s*(.*)$")
_EXPLICIT = re.compile(r"^\.\.(\s|$)")  # comments, targets, footnotes, substitutions
_ADORNMENT = re.compile(r"^([=\-~^\"'`#*+_.:])\1{2,}\s*$")
_SIMPLE_TABLE_RULE = re.compile(r"^=+(\s+=+)+\s*$")
_GRID_TABLE = re.compile(r"^[+|]")
_OPTION = re.compile(r"^:[\w-]+:(\s.*)?$")
_BULLET = re.compile(r"^([*+-]|#\.|\d+[.)]|[a-z][.)])\s+")

_ROLE = re.compile(r":([\w:+-]+):`([^`]*)`")
_LITERAL = re.compile(r"``(.+?)``")
_LINK = re.compile(r"`([^`<]*?)\s*<[^`>]*>`__?")
_REF = re.compile(r"`([^`]+)`__?")
_INTERPRETED = re.compile(r"`([^`]+)`")
_STRONG = re.compile(r"\*\*(\S(?:.*?\S)?)\*\*")
_EMPH = re.compile(r"(?<![\w*])\*(\S(?:.*?\S)?)\*(?![\w*])")
_FOOTNOTE_REF = re.compile(r"\s*\[(#\w*|\d+|\*)\]_")
_SUBST = re.compile(r"\|([\w -]+)\|_?")


def _role_text(inner: str) -> str:
    """``title <target>`` -> title; ``~a.b.c`` -> c; ``!x`` -> x."""
    m = re.match(r"^(.*?)\s*<[^<>]*>$", inner, re.S)
    if m and m.group(1):
        return m.group(1)
    inner = inner.lstrip("!")
    if inner.startswith("~"):
        inner = inner[1:].rsplit(".", 1)[-1]
    return inner


def _role_sub(m: re.Match) -> str:
    role, inner = m.group(1), _role_text(m.group(2))
    return f"{role.upper()} {inner}" if role in ("pep", "rfc") and inner.isdigit() else inner


def strip_inline(text: str) -> str:
    """Unwrap inline reST markup in one line of text."""
    text = _ROLE.sub(_role_sub, text)
    text = _LITERAL.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _REF.sub(r"\1", text)
    text = _INTERPRETED.sub(r"\1", text)
    text = _STRONG.sub(r"\1", text)
    text = _EMPH.sub(r"\1", text)
    text = _FOOTNOTE_REF.sub("", text)
    text = _SUBST.sub(r"\1", text)
    return text.replace("\\ ", "").replace("\\", "")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _keep_lines(lines: list[str]) -> list[str]:
    """Block-level pass: drop code, directives' code bodies, tables and adornments."""
    out: list[str] = []
    skip_deeper_than: int | None = None  # skip lines indented more than this
    literal_after: int | None = None  # a paragraph ended with '::' at this indent
    in_options = False
    in_doctest = False
    for raw in lines:
        line = raw.rstrip()
        stripped = line.strip()
        ind = _indent(line)
        if skip_deeper_than is not None:
            if not stripped or ind > skip_deeper_than:
                continue
            skip_deeper_than = None
        if in_doctest:
            if stripped:
                continue
            in_doctest = False
        if not stripped:
            in_options = False
            out.append("")
            continue
        if literal_after is not None:
            if ind > literal_after:  # the literal (code) block itself
                skip_deeper_than = literal_after
                literal_after = None
                continue
            literal_after = None
        if in_options and _OPTION.match(stripped):
            continue
        in_options = False
        if stripped.startswith(">>>"):  # doctest block: runs to the next blank line
            in_doctest = True
            continue
        m = _DIRECTIVE.match(stripped)
        if m:
            name, arg = m.group(1), m.group(2)
            if name in _DROP_BODY:
                skip_deeper_than = ind
            elif name in _VERSION_WORDS and arg:
                version, _, rest = arg.partition(" ")
                out.append(" " * ind + f"{_VERSION_WORDS[name]} {version}." + (f" {rest}" if rest else ""))
                in_options = True
            else:  # prose-bearing directive (note, function, class...): keep its body
                if name in _PROSE_ARG and arg:
                    out.append(" " * ind + arg)
                in_options = True
            continue
        if _EXPLICIT.match(stripped) or _EXPLICIT.match(_BULLET.sub("", stripped, count=1)):  # also "* .. _target:"
            skip_deeper_than = ind
            continue
        if _ADORNMENT.match(stripped) or _SIMPLE_TABLE_RULE.match(stripped) or _GRID_TABLE.match(stripped):
            continue
        if stripped.endswith("::"):  # "For example::" -> "For example:"; a lone or spaced "::" vanishes
            literal_after = ind
            before = line[:-2]
            if not before.strip():
                continue
            line = before.rstrip() if before.endswith(" ") else before + ":"
        out.append(line)
    return out


def rest_to_prose(source: str) -> str:
    """Turn a reST document into plain paragraphs (one per line, blank line between)."""
    lines = _keep_lines(source.expandtabs(8).splitlines())
    paragraphs: list[str] = []
    current: list[str] = []

    def flush() -> None:
        if current:
            paragraphs.append("\n".join(current))
            current.clear()

    for line in lines:
        text = line.strip()
        if not text:
            flush()
            continue
        if current and not _BULLET.match(text) and not _OPTION.match(text):
            current[-1] = f"{current[-1]} {text}"
        else:
            current.append(text)
    flush()
    cleaned = [re.sub(r"[ \t]{2,}", " ", strip_inline(p)).strip() for p in paragraphs]
    return "\n\n".join(p for p in cleaned if p)
