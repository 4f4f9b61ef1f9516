"""How far rounding in each dtype may push a probability, shared by the capture and the readers.

A float32 kernel's BOS weight agrees with a float32 recomputation to ~1e-6; a bfloat16 kernel
rounds queries, keys and its outputs, so a head that puts all of its weight on the first token
can read 1.00004 after averaging. The capture checks (:mod:`headsurgeon.capture.checks`) and the
diagnosis reader (:mod:`headsurgeon.diagnosis.result`) use the same allowance, so a diagnosis
measured in bf16 is never written by one and refused by the other. Keyed by dtype *name* (as
``torch.dtype`` prints without its ``torch.`` prefix and as diagnosis settings record it) so this
module needs no torch.
"""

from __future__ import annotations

#: Allowed disagreement of a probability per model dtype (entropy gets 4x, in nats).
PROBABILITY_TOLERANCE = {"float32": 1e-4, "float64": 1e-6, "bfloat16": 3e-2, "float16": 5e-3}
#: For a dtype not listed (or not recorded: files written before the dtype was).
UNKNOWN_DTYPE_TOLERANCE = 3e-2


def probability_tolerance(dtype_name: str | None) -> float:
    """The allowance for ``dtype_name`` ('float32', 'bfloat16', 'torch.float16', ...)."""
    name = (dtype_name or "").removeprefix("torch.")
    return PROBABILITY_TOLERANCE.get(name, UNKNOWN_DTYPE_TOLERANCE)
