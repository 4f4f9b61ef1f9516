"""The Bigram-Backcopy task: bigram statistics of real text, triggers, seeded generation.

Rule (Guo et al. 2024): a sequence starts with BOS; the first real token is drawn from the
unigram marginal with triggers removed; after that, if the current token is a trigger, the next
token copies the token just *before* the trigger, otherwise it is drawn from the bigram row of
the current token. A trigger is therefore always followed by a copy, and (by induction) never
preceded by a trigger, so copies never chain.

Vocabulary (our choice, the paper only says "character statistics"): the text is lower-cased
and every whitespace run becomes one space; the ``n_chars`` most frequent characters are kept
and all others map to one OTHER token, so each bigram row is estimated from thousands of
counts. Token ids are ``0..n_chars-1`` for the kept characters (most frequent first),
``n_chars`` for OTHER and ``n_chars+1`` for BOS. Triggers are the ``k`` most frequent kept
characters, skipping whitespace by default: a space trigger turns "a b" into "a a a..."
repeat loops (SCIENCE.md, pitfalls).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.strict import read_utf8

FORTUNES_DIR = Path("/usr/share/games/fortunes")
PYDOC_DIR = Path("/usr/share/doc/python3.11/html/_sources")
OTHER = "\u00a4"  # '¤' stands for every character outside the kept alphabet
BOS = "<bos>"


def default_text_sources() -> list[Path]:
    """Offline English text from Debian packages: ``fortunes`` (plain prose, preferred), then
    ``python3.11-doc`` (reStructuredText sources). Returns the files of the first one found."""
    if FORTUNES_DIR.is_dir():
        files = sorted(p for p in FORTUNES_DIR.iterdir() if p.is_file() and "." not in p.name)
        if files:
            return files
    if PYDOC_DIR.is_dir():
        files = sorted(PYDOC_DIR.rglob("*.rst.txt"))
        if files:
            return files
    return []


def load_text(path: str | Path | None = None) -> tuple[str, str]:
    """Return ``(text, source description)``; a given path wins over the default sources."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise HeadsurgeonError(f"text file {p} does not exist; pass an existing plain-text file")
        files = [p]
    else:
        files = default_text_sources()
        if not files:
            raise HeadsurgeonError(
                f"no offline text found in {FORTUNES_DIR} or {PYDOC_DIR}; "
                "install 'fortunes' or 'python3.11-doc' (apt) or pass a text file (text_path=...)"
            )
    parts = [read_utf8(f, what="text file") for f in files]
    text = "\n".join(parts)
    if files[0].parent == FORTUNES_DIR:
        text = re.sub(r"^%\s*$", " ", text, flags=re.MULTILINE)  # entry separators
    where = str(files[0]) if len(files) == 1 else f"{files[0].parent} ({len(files)} files)"
    return text, where


@dataclass(frozen=True)
class BigramBackcopy:
    """A fixed task instance: alphabet, bigram matrix, marginal and triggers.

    ``transition[i]`` is the next-token distribution after real token ``i`` (rows sum to 1,
    BOS column is 0). Build one with :meth:`from_text`; generate with :meth:`generate`.
    """

    alphabet: tuple[str, ...]  # id -> character, OTHER last
    transition: torch.Tensor  # (V, V) float64, V = len(alphabet) real tokens
    marginal: torch.Tensor  # (V,) float64, unigram frequencies of the text
    triggers: tuple[int, ...]
    source: str = ""

    @property
    def n_real(self) -> int:
        return len(self.alphabet)

    @property
    def bos(self) -> int:
        return self.n_real

    @property
    def vocab_size(self) -> int:
        return self.n_real + 1  # real tokens + BOS

    @classmethod
    def from_text(cls, text: str, *, n_chars: int = 32, n_triggers: int = 3,
                  lowercase: bool = True, whitespace_triggers: bool = False,
                  source: str = "") -> BigramBackcopy:
        """Count character bigrams of ``text`` (see the module docstring for the alphabet)."""
        text = re.sub(r"\s+", " ", text.lower() if lowercase else text).strip()
        if len(text) < 1000:
            raise HeadsurgeonError(
                f"text has only {len(text)} characters; give at least a few thousand characters"
            )
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        uniq, counts = np.unique(codes, return_counts=True)
        order = np.argsort(-counts, kind="stable")
        kept = uniq[order[:n_chars]]
        if len(kept) <= n_triggers:
            raise HeadsurgeonError(f"text has only {len(kept)} distinct characters; lower n_triggers")
        lookup = {int(c): i for i, c in enumerate(kept)}
        other = len(kept)
        ids = np.fromiter((lookup.get(int(c), other) for c in uniq), dtype=np.int64, count=len(uniq))
        tokens = ids[np.searchsorted(uniq, codes)]
        n_real = other + 1
        pair = np.bincount(tokens[:-1] * n_real + tokens[1:], minlength=n_real * n_real)
        pair = pair.reshape(n_real, n_real).astype(np.float64)
        empty = pair.sum(1) == 0
        pair[empty] = 1.0  # a never-followed token gets a uniform row instead of NaN
        transition = torch.from_numpy(pair / pair.sum(1, keepdims=True))
        marginal = torch.from_numpy(np.bincount(tokens, minlength=n_real) / len(tokens))
        alphabet = tuple(chr(int(c)) for c in kept) + (OTHER,)
        eligible = [i for i in range(len(kept)) if whitespace_triggers or not alphabet[i].isspace()]
        if len(eligible) < n_triggers:
            raise HeadsurgeonError(f"only {len(eligible)} trigger candidates; lower n_triggers")
        return cls(alphabet, transition, marginal, tuple(eligible[:n_triggers]), source)

    def trigger_mask(self, x: torch.Tensor) -> torch.Tensor:
        """Boolean tensor, True where ``x`` is a trigger token."""
        return torch.isin(x, torch.tensor(self.triggers, device=x.device))

    @cached_property
    def _tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sampling tables, built once: trigger flags, bigram-row CDFs, first-token CDF."""
        trig = np.zeros(self.vocab_size, dtype=bool)
        trig[list(self.triggers)] = True
        cdf = self.transition.cumsum(-1).numpy()
        first = self.marginal.numpy().copy()
        first[list(self.triggers)] = 0.0  # the first real token is never a trigger
        return trig, cdf, (first / first.sum()).cumsum()

    def generate(self, batch: int, seq_len: int, generator: torch.Generator) -> torch.Tensor:
        """``(batch, seq_len)`` long tensor of BB sequences, deterministic given the generator.

        Vectorised over the batch: one loop over positions, each step a batched inverse-CDF
        draw (count of the current rows' cumulative sums <= u) and a ``where`` for copies. All
        uniforms come from the torch generator up front; the loop runs in NumPy because its
        per-call overhead is ~3x lower than torch's on these small arrays (measured:
        0.22 vs 0.71 ms for 16 x 33, 9.9 vs 14 ms for 512 x 257), with identical output.
        """
        n = self.n_real
        trig, cdf, first_cdf = self._tables
        u = torch.rand(seq_len, batch, generator=generator, dtype=torch.float64).numpy()
        x = np.empty((seq_len, batch), dtype=np.int64)  # time-major: x[t] is contiguous
        x[0] = self.bos
        if seq_len > 1:
            x[1] = np.minimum(np.searchsorted(first_cdf, u[1], side="right"), n - 1)
        for t in range(2, seq_len):
            cur = x[t - 1]
            drawn = (cdf[cur] <= u[t][:, None]).sum(1)
            np.minimum(drawn, n - 1, out=drawn)  # guards u beyond a row's rounded total
            x[t] = np.where(trig[cur], x[t - 2], drawn)
        return torch.from_numpy(np.ascontiguousarray(x.T))

    def decode(self, row: torch.Tensor) -> str:
        return "".join("^" if int(t) == self.bos else self.alphabet[int(t)] for t in row)

    def describe(self) -> dict:
        """JSON-ready summary: alphabet, triggers (as characters) and the text source."""
        return {
            "source": self.source,
            "alphabet": "".join(self.alphabet),
            "other_token": OTHER,
            "bos_id": self.bos,
            "vocab_size": self.vocab_size,
            "triggers": [self.alphabet[i] for i in self.triggers],
            "trigger_ids": list(self.triggers),
        }


@dataclass(frozen=True)
class RuleCheck:
    """Result of :func:`check_rule`. ``ok`` only when every count of violations is zero."""

    n_sequences: int
    n_copies: int  # post-trigger positions checked
    bad_bos: int  # sequences not starting with BOS, or BOS later in a sequence
    bad_first: int  # first real token is a trigger
    bad_copies: int  # post-trigger token differs from the token before the trigger
    impossible_bigrams: int  # non-copy transition with zero bigram probability

    @property
    def ok(self) -> bool:
        return not (self.bad_bos or self.bad_first or self.bad_copies or self.impossible_bigrams)


def check_rule(task: BigramBackcopy, x: torch.Tensor) -> RuleCheck:
    """Check that ``x`` (batch, T) follows the BB rule exactly, including that every
    non-copy transition is possible under the bigram matrix."""
    x = x.long().cpu()
    b, t = x.shape
    bad_bos = int((x[:, 0] != task.bos).sum() + (x[:, 1:] == task.bos).any(1).sum())
    is_trig = task.trigger_mask(x)
    bad_first = int(is_trig[:, 1].sum()) if t > 1 else 0
    prev_trig = is_trig[:, 1:-1]  # trigger at t-1 for targets t = 2..T-1
    copies = x[:, 2:][prev_trig]
    sources = x[:, :-2][prev_trig]
    bad_copies = int((copies != sources).sum())
    cur, nxt = x[:, 1:-1][~prev_trig], x[:, 2:][~prev_trig]
    real = (cur < task.n_real) & (nxt < task.n_real)
    prob = task.transition[cur[real], nxt[real]]
    impossible = int((prob == 0).sum() + (~real).sum())
    return RuleCheck(b, int(prev_trig.sum()), bad_bos, bad_first, bad_copies, impossible)


def build_task(*, text_path: str | None = None, n_chars: int = 32, n_triggers: int = 3,
               lowercase: bool = True, whitespace_triggers: bool = False) -> BigramBackcopy:
    """Load the text (given file or offline default) and build the task from it."""
    text, where = load_text(text_path)
    return BigramBackcopy.from_text(text, n_chars=n_chars, n_triggers=n_triggers,
                                    lowercase=lowercase, whitespace_triggers=whitespace_triggers,
                                    source=where)
