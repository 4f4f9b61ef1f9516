"""What a training or evaluation corpus is: a :class:`CorpusSpec` (where the text comes from and
how much of it to use) and the :class:`Document` units that the held-out split works on.

The spec is a flat dataclass so a surgery run can save it beside its outputs and a later run
can rebuild exactly the same token stream from it (the content hash in
:attr:`PackedCorpus.info <headsurgeon.corpus.build.PackedCorpus>` proves it did).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, fields

from headsurgeon.errors import HeadsurgeonError

#: Built-in offline corpora, read from Debian packages (see :mod:`headsurgeon.corpus.builtin`).
BUILTIN_SOURCES = ("python-docs", "fortunes")
#: File suffixes read as plain text (a single such file is split into paragraph documents).
TEXT_SUFFIXES = (".txt", ".text", ".md", ".markdown", ".rst")


@dataclass(frozen=True)
class Document:
    """One unit of text. ``id`` is stable across runs and decides the held-out split, so it must
    not depend on the position of *other* documents (paths, ``file:line`` or content hashes)."""

    id: str
    text: str


def entry_id(container: str, text: str) -> str:
    """Id of an entry inside a file or data set (a paragraph, a JSONL line, a fortune, a row):
    the container plus a hash of the text, so inserting or removing *other* entries never renames
    it (and never moves it across the held-out split). Whole files are named by their path."""
    return f"{container}@{hashlib.sha1(text.encode('utf-8')).hexdigest()[:12]}"


@dataclass
class CorpusSpec:
    """Where corpus text comes from and how much of it to use.

    ``source`` is one of:

    * a ``.txt`` / ``.md`` / ``.rst`` file: every blank-line-separated paragraph is a document;
    * a folder: every text-like file under it (recursive, sorted, hidden entries skipped) is a
      document, and every ``.jsonl`` file under it contributes one document per line;
    * a ``.jsonl`` file: one JSON object per line, its text in ``text_field``;
    * a folder written by ``datasets.Dataset.save_to_disk`` (column ``text_field``);
    * ``hf:<name>[:<config>][:<split>]``: a Hugging Face hub data set, streamed (needs network);
    * ``python-docs`` or ``fortunes``: built-in offline English text from Debian packages.

    ``max_documents`` keeps the first N non-empty documents; ``max_tokens`` cuts the token stream
    (all documents, before the split) at N tokens. ``heldout_fraction`` of the documents (chosen by
    hashing their ids with the seed) form the held-out split; 0 disables it.
    """

    source: str
    text_field: str = "text"
    max_documents: int | None = None
    max_tokens: int | None = None
    heldout_fraction: float = 0.1

    def __post_init__(self) -> None:
        self.source = str(self.source)
        if not self.source.strip():
            raise HeadsurgeonError("corpus source is empty; pass a file, folder, .jsonl, hf:<name>, python-docs or fortunes")
        if not 0.0 <= float(self.heldout_fraction) < 1.0:
            raise HeadsurgeonError(f"heldout_fraction must be in [0, 1), not {self.heldout_fraction}")
        self.heldout_fraction = float(self.heldout_fraction)
        for name in ("max_documents", "max_tokens"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:
                raise HeadsurgeonError(f"{name} must be a positive number or unset, not {value}")
        if not self.text_field:
            raise HeadsurgeonError("text_field is empty; name the field that holds the text (default 'text')")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict) -> CorpusSpec:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in known})


def as_spec(spec: CorpusSpec | str) -> CorpusSpec:
    """Accept a bare source string wherever a spec is expected."""
    return spec if isinstance(spec, CorpusSpec) else CorpusSpec(source=str(spec))
