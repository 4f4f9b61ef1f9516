"""The HTML report of a surgery run: one self-contained file plus ``report.json`` beside it."""

from .build import Report, ReportOptions, build_report
from .page import render_html

__all__ = ["Report", "ReportOptions", "build_report", "render_html"]
