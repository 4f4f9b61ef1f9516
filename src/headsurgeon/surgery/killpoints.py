"""Named points where a test can kill the process (SIGKILL), to prove a run folder survives it.

``HEADSURGEON_KILL_AT=<point>:<n>`` kills the process the ``n``-th time it passes ``<point>``
(counting from 1); ``<point>:<n>:INT`` sends SIGINT instead (a Ctrl-C at that very point), ``:TERM``
SIGTERM (a scheduler's preemption, ``kill``). Kills triggered by the program's own progress, not by timers, make the
kill-and-resume tests independent of machine speed. Without the variable this costs one
dictionary lookup per point. The points, in the order a run meets them:

``manifest-created`` (the first manifest is on disk, nothing evaluated), ``stock-evaluated``,
``checkpoint-file`` (after each file of a checkpoint generation, before it is renamed into
place), ``checkpoint-renamed``, ``manifest-saved``, ``model-written`` (a model folder's weights
written, not yet renamed into place), ``step`` (after each optimizer step).
"""

from __future__ import annotations

import os
import signal

ENV = "HEADSURGEON_KILL_AT"
_hits: dict[str, int] = {}


def kill_point(name: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    point, count, *sig = spec.split(":")
    if point != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == int(count):
        os.kill(os.getpid(), {"INT": signal.SIGINT, "TERM": signal.SIGTERM}.get(sig[0] if sig else "", signal.SIGKILL))
