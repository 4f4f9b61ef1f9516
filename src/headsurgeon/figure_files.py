"""Figure files: one place that decides their format (PNG, SVG, PDF) and resolution.

Every command that writes figures writes them through :func:`save_figure`, so ``--format svg
--dpi 200`` means the same for ``diagnose``, ``compare``, ``extremes``, ``study`` and ``toy``.
The format is a setting of the *writing*, not of each figure function, so it is held for a block
of code by :func:`figure_format` (the CLI sets it once per command; a notebook can wrap a call:
``with figure_format("pdf"): diagnose(...)``), much like matplotlib's own ``rcParams``. The HTML
reports embed PNG bytes whatever the setting (:func:`png_bytes`): a browser shows them inline.

Default: PNG at 150 dpi (was 110-120, blurry on high-density screens and in print).
"""

from __future__ import annotations

import io
from contextlib import contextmanager
from pathlib import Path

from headsurgeon.errors import HeadsurgeonError

FORMATS = ("png", "svg", "pdf")
DEFAULT_DPI = 150

_current = {"format": "png", "dpi": DEFAULT_DPI}


@contextmanager
def figure_format(format: str = "png", dpi: int | None = None):
    """Write figures as ``format`` at ``dpi`` (raster resolution; SVG/PDF keep vector shapes) inside the block."""
    if format not in FORMATS:
        raise HeadsurgeonError(f"--format must be one of {', '.join(FORMATS)}, not '{format}'")
    if dpi is not None and not 20 <= dpi <= 1200:
        raise HeadsurgeonError(f"--dpi must be between 20 and 1200, not {dpi}")
    before = dict(_current)
    _current.update(format=format, dpi=dpi or DEFAULT_DPI)
    try:
        yield
    finally:
        _current.update(before)


def current_format() -> str:
    return _current["format"]


def figure_path(path: str | Path) -> Path:
    """``path`` with the suffix of the current format (``heatmap.png`` -> ``heatmap.svg``)."""
    return Path(path).with_suffix("." + _current["format"])


def figure_bytes(fig, *, format: str | None = None, dpi: int | None = None, tight: bool = False) -> bytes:
    """The figure encoded in ``format`` (default: the current one); closes the figure."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    kw = {"bbox_inches": "tight"} if tight else {}
    fig.savefig(buf, format=format or _current["format"], dpi=dpi or _current["dpi"], **kw)
    plt.close(fig)
    return buf.getvalue()


def png_bytes(fig, dpi: int | None = None) -> bytes:
    """PNG bytes for embedding in HTML, whatever the current file format."""
    return figure_bytes(fig, format="png", dpi=dpi)


def save_figure(fig, path: str | Path, *, tight: bool = False) -> Path:
    """Write ``fig`` atomically beside ``path`` in the current format; returns the path written
    (its suffix is the format's, whatever ``path`` had)."""
    from headsurgeon.io import atomic_write_bytes

    out = figure_path(path)
    atomic_write_bytes(out, figure_bytes(fig, tight=tight))
    return out
