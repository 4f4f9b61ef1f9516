"""Block-streamed execution for models larger than memory (see ``runner.py``).

:func:`open_streamed` builds a weightless skeleton, :class:`BlockStreamer` runs prompt batches
through it one block at a time; what is measured during each block call is the caller's
business (diagnosis and the extreme-token probes pass their own hooks).
"""

from .activations import DEFAULT_BUDGET, ActivationStore
from .model import StreamedModel, open_streamed, resolve_checkpoint_folder
from .runner import BlockStreamer, StreamStats
from .shards import ShardReader

__all__ = [
    "DEFAULT_BUDGET",
    "ActivationStore",
    "BlockStreamer",
    "ShardReader",
    "StreamStats",
    "StreamedModel",
    "open_streamed",
    "resolve_checkpoint_folder",
]
