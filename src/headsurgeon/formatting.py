"""The one place numbers and HTML are formatted: escaping, numbers, percentages, tables,
embedded figures, and the page skeleton. Used by the run report, the study page and the
Markdown tables, so one number reads the same everywhere. No script and no external
resource, so a page opens offline and shows the same thing in any browser; styles are
inline in one ``<style>`` block."""

from __future__ import annotations

import base64
import html
import math

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
main{max-width:1180px;margin:0 auto;padding:16px 28px 60px}
h1{font-size:1.5em;margin:.6em 0 .2em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:1.0em;margin-top:1.2em}
nav{font-size:.85em;margin:.5em 0 1em}nav a{margin-right:.9em;color:#0b5cad;text-decoration:none}
table{border-collapse:collapse;margin:.6em 0;font-size:.85em;background:#fff}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}th{background:#f0f0f3}
td.n{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:.8em 0;background:#fff;border:1px solid #e3e3e3;padding:8px;display:inline-block;max-width:100%}
figure img{max-width:100%;height:auto;display:block}figcaption{font-size:.8em;color:#555;margin-top:4px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:.8em 0}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:150px}
.card b{display:block;font-size:1.25em}.card span{font-size:.8em;color:#555}
.ok{color:#1a7f37}.bad{color:#c62828}.note{border-left:3px solid #b0b7c3;padding:3px 10px;margin:4px 0;font-size:.85em;color:#444}
#summary{background:#fff;border:1px solid #ddd;border-radius:6px;padding:4px 14px;margin:.8em 0}
#summary p.verdict{font-size:1.05em}table.headline td:first-child{font-weight:600}
pre.gen{white-space:pre-wrap;font-size:1em;margin:0;max-width:440px}
.muted{color:#666;font-size:.85em}
"""


def esc(x) -> str:
    return html.escape("" if x is None else str(x))


def num(x, digits: int = 4) -> str:
    """A number for a table cell: ``–`` for missing, ints with thousands separators, floats with
    ``digits`` decimals (an exponent for numbers too large, or too small to show any digit)."""
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if math.isnan(x):
            return "–"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        if abs(x) >= 1e5:
            return f"{x:.4g}"
        if x != 0 and abs(x) < 0.5 * 10**-digits:
            return f"{x:.{max(digits - 1, 1)}e}"
        return f"{x:.{digits}f}"
    return esc(x)


def pct(x, digits: int = 1) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}%"


def table(headers: list[str], rows: list[list], *, numeric: set[int] | None = None, cls: str = "") -> str:
    """``rows`` hold already-formatted HTML strings (use :func:`num` / :func:`esc`)."""
    numeric = numeric or set()
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(r)) + "</tr>" for r in rows
    )
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def kv_table(d: dict) -> str:
    """Settings as given: floats in their shortest exact form (a learning rate of 5e-05 must not
    read 0.0001)."""

    def show(v) -> str:
        if isinstance(v, float):
            return esc(f"{v:g}" if abs(v) < 1e-3 or abs(v) >= 1e6 else repr(v))
        return num(v) if isinstance(v, (int, bool)) else esc(v)

    return table(["key", "value"], [[esc(k), show(v)] for k, v in d.items()])


def img(png: bytes, alt: str) -> str:
    """A PNG embedded in the page (base64), so the file needs nothing beside it."""
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def figure(name: str, png: bytes, caption: str) -> str:
    return f'<figure id="fig-{esc(name)}">{img(png, f"{name} figure")}<figcaption>{esc(caption)}</figcaption></figure>'



def card(value: str, label: str, cls: str = "") -> str:
    return f'<div class="card"><b class="{cls}">{value}</b><span>{esc(label)}</span></div>'


def note(text: str) -> str:
    return f'<div class="note">{esc(text)}</div>'


def page(title: str, sections: list[tuple[str, str, str]], header: str) -> str:
    """``sections``: ``(id, heading, inner html)``; empty inner html drops the section."""
    sections = [s for s in sections if s[2]]
    nav = "".join(f'<a href="#{sid}">{esc(h)}</a>' for sid, h, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{esc(h)}</h2>{inner}</section>' for sid, h, inner in sections)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>'
            f"<body><main>{header}<nav>{nav}</nav>{body}</main></body></html>")
