"""User-facing errors.

Anything a user can cause (a missing path, a bad threshold, an offline machine) is raised as a
:class:`HeadsurgeonError` whose message is one line that names the problem *and* the fix.
The CLI turns these into ``error: <message>`` and exit code 2, with no traceback; library
callers get an ordinary exception they can catch.
"""

from __future__ import annotations


class HeadsurgeonError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class UnsupportedArchitectureError(HeadsurgeonError):
    """The model's family has no head-layout adapter."""


class CaptureError(HeadsurgeonError):
    """Attention weights could not be captured, or failed their sanity checks."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`HeadsurgeonError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise HeadsurgeonError(message)
