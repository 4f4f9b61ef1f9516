"""OLMo 2: the Llama layout, but the query/key RMS norms run over *all* heads together.

``q_norm`` is an RMS norm over the whole ``[heads * head_dim]`` query projection, applied before
the heads are split (``k_norm`` likewise over all KV heads). Its weight has a per-head segment,
but the root-mean-square divides every head's query by one number computed from all heads: when
surgery re-initialises head h's query rows, that number changes, and so does every other head's
normalised query in the layer. Decision: the norm weights stay frozen (they are not what makes
the heads depend on each other), the adapter declares ``surgery_is_local = False``, ``plan`` and
``operate`` warn and record it, and the weight invariant (everything outside the targets' slices
bit-identical) still holds — only the *function* of the untouched heads moves.
"""

from __future__ import annotations

from .llama import LlamaAdapter, QKNormMixin


class Olmo2Adapter(QKNormMixin, LlamaAdapter):
    model_types = ("olmo2",)
    family = "olmo2"
    qk_norm_scope = "all_heads"
    surgery_is_local = False

    def surgery_warnings(self) -> list[str]:
        return [
            "OLMo 2 normalises queries (and keys) over all heads of a layer together: re-initialising a "
            "head changes every other head's normalised query in its layer, so surgery is not local "
            "(weights outside the targets' slices still stay bit-identical); re-diagnose every head afterwards"
        ]
