"""Which tokens of a tokenised corpus are used, and on which side of the held-out split.

Three rules, applied in this order to the documents in load order:

1. **Duplicates**: a document whose text exactly equals an earlier one is dropped, so the same
   text can never sit in both splits (Debian ``fortunes`` repeats ~90 entries across files).
2. **Cap**: with ``max_tokens``, the stream is cut after that many tokens (the last document kept
   may be cut short).
3. **Held-out by document**: a document is held out iff ``u(seed, id) < threshold`` where
   ``u`` maps ``sha256("<seed>:<id>")`` to [0, 1) and ``threshold = heldout_fraction``. A
   document's side therefore depends only on its own id and the seed: adding documents never
   moves existing ones. If the held-out side would not fill one sequence, the threshold is
   raised just enough (taking the documents with the next-smallest ``u``) to fill one, provided
   training still fills one too — that fallback is recorded in the corpus info.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from .tokenize import TokenTable


def unit_hash(seed: int, doc_id: str) -> float:
    """Deterministic uniform number in [0, 1) for a (seed, document id) pair."""
    digest = hashlib.sha256(f"{seed}:{doc_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


@dataclass
class Selection:
    """Per-document decisions: tokens taken (0 = unused) and held-out flag."""

    take: np.ndarray  # int64 [documents]
    heldout: np.ndarray  # bool [documents]
    duplicates: int
    truncated: bool
    threshold: float
    fallback: bool

    def stream(self, table: TokenTable, *, heldout: bool) -> np.ndarray:
        """The concatenated tokens of one side, in document order."""
        offsets = table.offsets
        pos_in_doc = np.arange(len(table.tokens), dtype=np.int64) - np.repeat(offsets[:-1], table.lengths)
        use = pos_in_doc < np.repeat(self.take, table.lengths)
        side = np.repeat(self.heldout == heldout, table.lengths)
        return table.tokens[use & side]

    def documents(self, *, heldout: bool) -> int:
        return int(((self.take > 0) & (self.heldout == heldout)).sum())

    def tokens(self, *, heldout: bool) -> int:
        return int(self.take[self.heldout == heldout].sum())


def unique_mask(digests: list[str]) -> np.ndarray:
    """True for the first occurrence of each text digest."""
    seen: set[str] = set()
    mask = np.zeros(len(digests), dtype=bool)
    for i, d in enumerate(digests):
        if d not in seen:
            seen.add(d)
            mask[i] = True
    return mask


def cap_tokens(lengths: np.ndarray, keep: np.ndarray, max_tokens: int | None) -> tuple[np.ndarray, bool]:
    """Tokens taken per document once the stream (kept documents, in order) is cut at ``max_tokens``."""
    take = np.where(keep, lengths, 0).astype(np.int64)
    if max_tokens is None or take.sum() <= max_tokens:
        return take, False
    before = np.cumsum(take) - take
    return np.clip(max_tokens - before, 0, take), True


def select(table: TokenTable, *, heldout_fraction: float, seed: int, seq_len: int, max_tokens: int | None) -> Selection:
    """Apply the three rules of this module (``heldout_fraction=0`` holds nothing out)."""
    keep = unique_mask(table.digests)
    take, truncated = cap_tokens(table.lengths, keep, max_tokens)
    used = take > 0
    u = np.array([unit_hash(seed, i) for i in table.ids], dtype=np.float64)
    threshold, fallback = float(heldout_fraction), False
    heldout = used & (u < threshold)
    if heldout_fraction > 0 and take[heldout].sum() < seq_len:
        # Raise the threshold just enough to hold out one sequence's worth of whole documents.
        order = np.flatnonzero(used)[np.argsort(u[used], kind="stable")]
        filled = np.cumsum(take[order])
        k = int(np.searchsorted(filled, seq_len))  # first position where the held-out side fills a sequence
        if k < len(order) and take.sum() - filled[k] >= seq_len:  # only if training keeps a sequence too
            threshold, fallback = float(np.nextafter(u[order[k]], 1.0)), True
            heldout = used & (u < threshold)
    return Selection(take=take, heldout=heldout, duplicates=int((~keep).sum()), truncated=truncated, threshold=threshold, fallback=fallback)
