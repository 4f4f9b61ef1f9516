"""The report page: the run's sections (and the study's, when given) in the page skeleton.

Page assembly sits here, above :mod:`.sections` (what each section says) and
:mod:`headsurgeon.formatting` (the primitives), so imports point one way.
"""

from __future__ import annotations

from headsurgeon.formatting import page

from .sections import all_sections, header


def render_html(report) -> str:
    """The whole page for a :class:`~headsurgeon.report.build.Report`."""
    d = report.data
    name = (d["run"].get("model") or {}).get("name", "model")
    sections = all_sections(d, report.figures)
    if report.study_html:  # before the configuration section, after the run's own results
        sections.insert(len(sections) - 1, ("study", "Controlled study: does surgery beat its controls?", report.study_html))
    return page(f"headsurgeon report: {name}", sections, header(d))
