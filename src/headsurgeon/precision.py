"""How far rounding in each dtype may push a probability, shared by the capture and the readers.

For statistics reduced inside the attention call (the engine) and for what is read back from
their files; the eager reference's row sums over full maps keep their own rule
(:func:`headsurgeon.capture.attention.row_sum_tolerance`). A float32 kernel's BOS weight agrees
with a float32 recomputation to ~1e-6; a bfloat16 kernel rounds queries, keys and its outputs,
so a head that puts all of its weight on the first token can read 1.00004 after averaging. The
capture checks (:mod:`headsurgeon.capture.checks`) and the diagnosis reader
(:mod:`headsurgeon.diagnosis.result`) use the same allowance, so a diagnosis measured in bf16 is
never written by one and refused by the other. Keyed by dtype *name* (as ``torch.dtype`` prints
without its ``torch.`` prefix and as diagnosis settings record it) so this module needs no torch.
"""

from __future__ import annotations

#: Allowed disagreement of a probability per model dtype (entropy gets 4x, in nats).
PROBABILITY_TOLERANCE = {"float32": 1e-4, "float64": 1e-6, "bfloat16": 3e-2, "float16": 5e-3}
#: For a dtype not in the table (readers treat a file that records no dtype as float32: those
#: were written before the dtype was recorded, all in float32).
UNKNOWN_DTYPE_TOLERANCE = 3e-2


def probability_tolerance(dtype_name: str | None) -> float:
    """The allowance for ``dtype_name`` ('float32', 'bfloat16', 'torch.float16', ...)."""
    name = (dtype_name or "").removeprefix("torch.")
    return PROBABILITY_TOLERANCE.get(name, UNKNOWN_DTYPE_TOLERANCE)
