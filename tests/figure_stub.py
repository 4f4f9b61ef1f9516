"""A constant 1x1 PNG in place of matplotlib's drawing, for tests whose subject is not a figure.

Drawing is most of what a tiny run costs; a test that checks wiring (a CLI command, a family's
bookkeeping) can build every figure from its numbers and skip only the drawing, where other
tests draw the same figure functions for real and check the pixels.
"""

from __future__ import annotations

import base64

import matplotlib.figure

#: A valid 1x1 PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def stub_savefig(monkeypatch) -> None:
    """Make ``Figure.savefig`` write :data:`PNG` (to a path or a file object) for this test."""
    def savefig(self, fname, *args, **kwargs):
        if hasattr(fname, "write"):
            fname.write(PNG)
        else:
            with open(fname, "wb") as f:
                f.write(PNG)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
