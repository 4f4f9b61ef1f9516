"""Render the report in headless Chromium: the page must show its figures and tables offline."""

import base64
import contextlib
import io
import os
import shutil
import signal
import struct
import subprocess
from html.parser import HTMLParser

import matplotlib.image as mpimg
import numpy as np
import pytest

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt-get install -y chromium)"),
]


#: Only a safety net against a wedged browser (it kills the whole process group): nothing
#: asserted depends on how fast Chromium is. The page has no script and every image is a data:
#: URI, so the DOM is final at load; the screenshot waits for every compositor stage (decoding,
#: raster) before it draws and runs on virtual time, which advances only when Chromium is idle.
HARD_KILL_SECONDS = 600


def _chromium(tmp_path, *args: str) -> tuple[bytes, bytes]:
    """Run headless Chromium to completion; its ``(stdout, stderr)``.

    Output goes to files, not pipes: a helper process that outlives the browser (crashpad, a
    zygote) cannot then keep a pipe open and block the read. The browser runs in its own
    process group, which is killed afterwards in any case, so nothing is left running."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"]
    out, err = tmp_path / "chromium.out", tmp_path / "chromium.err"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen([CHROMIUM, *flags, *args], stdout=o, stderr=e, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            code = proc.wait(timeout=HARD_KILL_SECONDS)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert code is not None, f"Chromium did not finish in {HARD_KILL_SECONDS} s (killed): {err.read_bytes()[-2000:]!r}"
    assert code == 0, f"Chromium exited with {code}: {err.read_bytes()[-2000:]!r}"
    return out.read_bytes(), err.read_bytes()


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.tables, self.sections, self.cells = [], 0, [], 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        elif tag == "table":
            self.tables += 1
        elif tag == "td":
            self.cells += 1
        elif tag == "section":
            self.sections.append(a.get("id"))


def _png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", png[16:24])


def test_chromium_shows_figures_and_tables(full_report, tmp_path):
    url = full_report.html_path.resolve().as_uri()
    dom = _chromium(tmp_path, "--dump-dom", url)[0].decode("utf-8")
    page = _Page()
    page.feed(dom)
    assert len(page.imgs) == len(full_report.figures) == 6
    for src in page.imgs:
        assert src.startswith("data:image/png;base64,")
        png = base64.b64decode(src.split(",", 1)[1])
        w, h = _png_size(png)
        assert len(png) > 5000 and w > 300 and h > 200
    assert page.tables >= 12 and page.cells > 100
    assert page.sections[:4] == ["plan", "perplexity", "topology", "drift"] and "ablation" in page.sections

    shot = tmp_path / "page.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2600", "--hide-scrollbars",
              "--run-all-compositor-stages-before-draw", "--virtual-time-budget=5000", url)
    img = mpimg.imread(io.BytesIO(shot.read_bytes()), format="png")[..., :3]
    assert img.shape[0] >= 2000 and img.shape[1] >= 1200
    assert img.std() > 0.05 and (img < 0.8).mean() > 0.02  # not a blank page
    # Figures drew: the heatmaps put colour on the page; text, tables and nav links alone give
    # ~0.15% coloured pixels (measured with the <img> tags removed), the report with figures ~7%.
    saturation = img.max(-1) - img.min(-1)
    assert (saturation > 0.15).mean() > 0.02, "hardly any coloured pixels: the embedded figures did not render"
    assert np.isfinite(img).all()


def _text(fragment: str) -> str:
    class _T(HTMLParser):
        def __init__(self):
            super().__init__()
            self.parts = []

        def handle_data(self, data):
            self.parts.append(data)

    t = _T()
    t.feed(fragment)
    return " ".join(" ".join(t.parts).split())


def test_chromium_top_of_page_answers_did_it_work(full_report, tmp_path):
    """The first thing on the rendered page: headline figures for both held-out distributions
    with their changes (absolute and percent), and the sentence on what one run can show."""
    dom = _chromium(tmp_path, "--dump-dom", full_report.html_path.resolve().as_uri())[0].decode("utf-8")
    start = dom.index('<div id="summary">')
    assert start < dom.index("<nav>") and start < dom.index("<section")
    assert 'class="note"' not in dom[:start]  # no note above the answer
    top = _text(dom[start:dom.index("</div>", start)])
    s = full_report.data["summary"]
    rows = {r["key"]: r for r in s["rows"]}
    for key, label in (("heldout", "held-out perplexity, training distribution"), ("other", "held-out perplexity, other distribution")):
        r = rows[key]
        assert r["stock"] is not None and r["points"], f"{key} not measured in the test run"
        p = r["points"][0]
        expected = (f"{label} {r['stock']:.3f} {p['value']:.3f} {p['change']:+.3f} ({p['change_percent']:+.1f}%), {p['verdict']}")
        assert expected in top, f"{expected!r} not on the page: {top[:600]}"
        assert p["verdict"] in ("better", "worse")
        assert abs(p["change_percent"] - 100 * (p["value"] - r["stock"]) / r["stock"]) < 1e-9
    assert "This is one run with one seed and no controls" in top and "headsurgeon study" in top
    assert s["what_happened"] in top and "target heads are healthy" in top
