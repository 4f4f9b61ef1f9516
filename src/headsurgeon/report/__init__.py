"""The HTML report of a surgery run: one self-contained file plus ``report.json`` beside it.

Names are imported on first use (:mod:`headsurgeon.lazy`): the CLI reads :class:`ReportOptions`'
fields without importing torch.
"""

from headsurgeon.lazy import lazy_package

lazy_package(__name__, {"Report": ".build", "ReportOptions": ".options", "build_report": ".build", "render_html": ".page"})
