"""Corpora for surgery training and evaluation: reading text from files, folders, JSONL,
``datasets`` data sets or the built-in offline sources, tokenising and packing it into
sequences with a deterministic by-document held-out split, and iterating over batches
resumably. See ``docs/corpus.md``.
"""

from .batches import epoch_order, iterate_batches, num_batches
from .build import EvalSet, PackedCorpus, build_corpus, build_eval_set, pack, sequences_sha256, spread_rows
from .sources import load_documents, resolve_source
from .spec import BUILTIN_SOURCES, CorpusSpec, Document

__all__ = [
    "BUILTIN_SOURCES",
    "CorpusSpec",
    "Document",
    "EvalSet",
    "PackedCorpus",
    "build_corpus",
    "build_eval_set",
    "epoch_order",
    "iterate_batches",
    "load_documents",
    "num_batches",
    "pack",
    "resolve_source",
    "sequences_sha256",
    "spread_rows",
]
