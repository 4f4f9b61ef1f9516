"""Measure attention inside each layer's attention call (the engine), and the eager reference.

:mod:`.engine` computes per-head statistics without a T x T map; :mod:`.attention` is the old
eager capture of full maps through hooks, kept only as the reference the tests compare with.
"""

from .attention import AttentionBatch, check_attention_map, stream_attention
from .engine import ENGINE, LayerStats, check_all_layers, measure_attention, register_engine
from .rowstats import RowStats, chunked_row_stats, fused_row_stats, rows_from_maps

__all__ = [
    "ENGINE",
    "AttentionBatch",
    "LayerStats",
    "RowStats",
    "check_all_layers",
    "check_attention_map",
    "chunked_row_stats",
    "fused_row_stats",
    "measure_attention",
    "register_engine",
    "rows_from_maps",
    "stream_attention",
]
