"""Writing an extremes result to disk: ``extremes.json`` and the figures of the parts that ran."""

from __future__ import annotations

from pathlib import Path

from headsurgeon.io import ensure_output_dir

from .figures import save_domain_dependent, save_dormancy, save_drain_heatmap, save_interventions, save_norm_curves
from .result import ExtremesResult


def write_extremes_outputs(res: ExtremesResult, out_dir: str | Path) -> dict[str, Path]:
    """Write the JSON and every figure whose data exists; returns ``{name: path}``."""
    out = ensure_output_dir(out_dir)
    paths = {"json": res.save(out / "extremes.json")}
    pp = res.per_prompt
    if "resid_first" in pp or "value_first" in pp:
        paths["norms"] = save_norm_curves(res, out / "norms.png")
    if "value_first" in pp:
        paths["drain"] = save_drain_heatmap(res, out / "drain_heatmap.png")
    if "dormancy" in res.parts:
        paths["dormancy"] = save_dormancy(res, out / "dormancy.png")
        paths["domain_dependent"] = save_domain_dependent(res, out / "domain_dependent.png")
    if res.interventions is not None:
        paths["interventions"] = save_interventions(res, out / "interventions.png")
    return paths
