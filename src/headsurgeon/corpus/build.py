"""Packed training / held-out sequences (:func:`build_corpus`) and evaluation sets of another
distribution (:func:`build_eval_set`).

Packing: the documents of one side are concatenated in load order (EOS after each, see
:mod:`headsurgeon.corpus.tokenize`), cut into ``seq_len`` blocks, and the remainder (< seq_len
tokens) is dropped. Blocks therefore cross document boundaries, as in the paper's training and
in most LM pre-training; position 0 of a block is usually mid-document.

``info`` records everything needed to prove two runs used the same data: the spec, the tokenizer
hash, the split rule and a SHA-256 of the packed token ids.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from headsurgeon.errors import HeadsurgeonError

from .sources import resolve_source
from .spec import CorpusSpec, as_spec
from .split import select
from .tokenize import CORPUS_FORMAT, TokenTable, tokenize_source, tokenizer_fingerprint


@dataclass
class PackedCorpus:
    """``train`` [N, seq_len] and ``heldout`` [M, seq_len] token ids (int64) plus JSON-ready ``info``."""

    train: torch.Tensor
    heldout: torch.Tensor
    info: dict = field(default_factory=dict)


@dataclass
class EvalSet:
    """Sequences [K, seq_len] of an evaluation corpus (all of its documents, no split) and ``info``."""

    sequences: torch.Tensor
    info: dict = field(default_factory=dict)


def pack(stream: np.ndarray, seq_len: int) -> torch.Tensor:
    """Cut a token stream into ``seq_len`` blocks, dropping the remainder."""
    n = len(stream) // seq_len
    return torch.from_numpy(np.ascontiguousarray(stream[: n * seq_len], dtype=np.int64).reshape(n, seq_len))


def spread_rows(sequences: torch.Tensor, max_rows: int | None) -> torch.Tensor:
    """At most ``max_rows`` rows, evenly spaced (first and last included): a capped subset of a
    packed corpus that still spans every file, where the first rows would be one file's text."""
    n = int(sequences.shape[0])
    if max_rows is not None and int(max_rows) < 1:
        raise HeadsurgeonError(f"max_sequences must be positive or None, not {max_rows}")
    if max_rows is None or n <= int(max_rows):
        return sequences
    picks = torch.linspace(0, n - 1, int(max_rows), dtype=torch.float64).round().long().unique()
    return sequences[picks]


def sequences_sha256(*tensors: torch.Tensor) -> str:
    """SHA-256 of packed token ids (shape included), the proof two runs saw the same data."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(repr(tuple(t.shape)).encode())
        h.update(t.to(torch.int64).contiguous().numpy().astype("<i8", copy=False).tobytes())
    return h.hexdigest()


def _check_seq_len(seq_len: int) -> None:
    if int(seq_len) < 2:
        raise HeadsurgeonError(f"seq_len must be at least 2 (a next-token target needs two tokens), not {seq_len}")


def _base_info(spec: CorpusSpec, resolved, tokenizer, seq_len: int, add_eos: bool) -> dict:
    return {
        "format": CORPUS_FORMAT,
        "spec": spec.to_dict(),
        "source": spec.source,
        "kind": resolved.kind,
        "location": resolved.location,
        "seq_len": int(seq_len),
        "add_eos_between_docs": bool(add_eos),
        "eos_token_id": tokenizer.eos_token_id if add_eos else None,
        "tokenizer": getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__,
        "tokenizer_sha256": tokenizer_fingerprint(tokenizer),
    }


def _load(tokenizer, spec, seq_len, add_eos, cache_dir, progress):
    spec = as_spec(spec)
    _check_seq_len(seq_len)
    resolved = resolve_source(spec)
    table: TokenTable = tokenize_source(tokenizer, spec, add_eos=add_eos, cache_dir=cache_dir, progress=progress, resolved=resolved)
    if not len(table.ids):
        raise HeadsurgeonError(f"corpus {spec.source} has no text (0 non-empty documents); point it at files that contain text")
    return spec, resolved, table


def build_corpus(
    tokenizer,
    spec: CorpusSpec | str,
    *,
    seq_len: int,
    seed: int = 0,
    add_eos_between_docs: bool = True,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> PackedCorpus:
    """Tokenise ``spec``, split it by document into train / held-out and pack both into ``seq_len``
    blocks. Raises a one-line :class:`HeadsurgeonError` if either side cannot fill one sequence
    (``heldout_fraction=0`` gives an empty held-out tensor instead)."""
    spec, resolved, table = _load(tokenizer, spec, seq_len, add_eos_between_docs, cache_dir, progress)
    sel = select(table, heldout_fraction=spec.heldout_fraction, seed=seed, seq_len=seq_len, max_tokens=spec.max_tokens)
    total, n_docs = int(sel.take.sum()), int((sel.take > 0).sum())
    train_tokens, heldout_tokens = sel.tokens(heldout=False), sel.tokens(heldout=True)
    where = f"corpus {spec.source} has {total} tokens in {n_docs} documents"
    if train_tokens < seq_len:
        held = f" after holding out {heldout_tokens} tokens" if heldout_tokens else ""
        raise HeadsurgeonError(
            f"{where}; its training split has {train_tokens} tokens{held}, but one sequence of seq_len={seq_len} needs {seq_len}; add text or lower seq_len"
            + (" or heldout_fraction" if heldout_tokens else "")
        )
    if spec.heldout_fraction > 0 and heldout_tokens < seq_len:
        raise HeadsurgeonError(
            f"{where}; its held-out split has {heldout_tokens} tokens, but one held-out sequence of seq_len={seq_len} needs {seq_len} "
            "from documents not used for training; add documents, lower seq_len, or set heldout_fraction to 0"
        )
    train = pack(sel.stream(table, heldout=False), seq_len)
    heldout = pack(sel.stream(table, heldout=True), seq_len)
    info = _base_info(spec, resolved, tokenizer, seq_len, add_eos_between_docs)
    info.update(
        documents=n_docs,
        duplicates_dropped=sel.duplicates,
        tokens=total,
        truncated_by_max_tokens=sel.truncated,
        train_documents=sel.documents(heldout=False),
        heldout_documents=sel.documents(heldout=True),
        train_tokens=train_tokens,
        heldout_tokens=heldout_tokens,
        train_sequences=int(train.shape[0]),
        heldout_sequences=int(heldout.shape[0]),
        dropped_remainder_tokens=train_tokens + heldout_tokens - (train.numel() + heldout.numel()),
        split={
            "rule": "document held out iff sha256('<seed>:<id>')[:8] / 2^64 < threshold",
            "seed": int(seed),
            "heldout_fraction": spec.heldout_fraction,
            "threshold": sel.threshold,
            "fallback": sel.fallback,
        },
        train_sha256=sequences_sha256(train),
        heldout_sha256=sequences_sha256(heldout),
        sha256=sequences_sha256(train, heldout),
    )
    return PackedCorpus(train=train, heldout=heldout, info=info)


def build_eval_set(
    tokenizer,
    spec: CorpusSpec | str,
    *,
    seq_len: int,
    max_sequences: int | None,
    add_eos_between_docs: bool = True,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> EvalSet:
    """Sequences of a corpus used only for evaluation (the "different distribution" set).

    Every document is used (no held-out split: the whole source is unseen by training; if it is
    the training source, use ``build_corpus(...).heldout`` instead). ``max_sequences`` blocks are
    taken evenly spaced over the packed stream, so a capped set still spans the whole source
    (sorted sources are grouped by file; the first blocks alone would be one file's text).
    """
    spec, resolved, table = _load(tokenizer, spec, seq_len, add_eos_between_docs, cache_dir, progress)
    sel = select(table, heldout_fraction=0.0, seed=0, seq_len=seq_len, max_tokens=spec.max_tokens)
    packed = pack(sel.stream(table, heldout=False), seq_len)
    total = int(sel.take.sum())
    if packed.shape[0] == 0:
        raise HeadsurgeonError(
            f"evaluation corpus {spec.source} has {total} tokens, but one sequence of seq_len={seq_len} needs {seq_len}; add text or lower seq_len"
        )
    available = int(packed.shape[0])
    packed = spread_rows(packed, max_sequences)
    info = _base_info(spec, resolved, tokenizer, seq_len, add_eos_between_docs)
    info.update(
        documents=int((sel.take > 0).sum()),
        duplicates_dropped=sel.duplicates,
        tokens=total,
        truncated_by_max_tokens=sel.truncated,
        available_sequences=available,
        sequences=int(packed.shape[0]),
        selection="all" if int(packed.shape[0]) == available else "evenly spaced over the packed stream",
        sha256=sequences_sha256(packed),
    )
    return EvalSet(sequences=packed, info=info)
