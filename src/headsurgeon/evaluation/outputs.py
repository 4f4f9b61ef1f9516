"""Files of a comparison: ``comparison.json`` and its figures, written into one folder."""

from __future__ import annotations

from pathlib import Path

from headsurgeon.io import ensure_output_dir

from .compare import Comparison
from .figures import column_figure, drift_figure, histogram_figure, save_png, topology_figure, zone_figure


def write_comparison(c: Comparison, out_dir: str | Path) -> list[Path]:
    """Write ``comparison.json``, ``topology.png``, ``drift.png``, ``columns.png``, ``histogram.png``
    and, with more than two inputs, ``zones.png``; return the paths written."""
    out = ensure_output_dir(out_dir)
    paths = [c.save(out / "comparison.json"),
             save_png(topology_figure(c), out / "topology.png"),
             save_png(drift_figure(c), out / "drift.png"),
             save_png(column_figure(c), out / "columns.png"),
             save_png(histogram_figure(c), out / "histogram.png")]
    if len(c.labels) > 2:
        paths.append(save_png(zone_figure(c), out / "zones.png"))
    return paths
