"""Documents -> token ids per document, through the ``datasets`` library so big corpora stream
to disk and a second build with the same source and tokenizer is read back from the cache.

Two cached steps, each keyed by an explicit fingerprint (so the cache never depends on how
``datasets`` happens to hash a Python function):

1. ``Dataset.from_generator`` writes the documents (id, text, text digest); the key is the source's
   content fingerprint (paths, sizes, mtimes) plus ``max_documents``/``text_field``.
2. ``.map(batched=True)`` tokenises them and appends EOS; the key adds a hash of the tokenizer.

The result is handed back as flat numpy arrays (:class:`TokenTable`) read straight from the
Arrow buffers, which is all that splitting and packing need.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from headsurgeon.errors import HeadsurgeonError

from .sources import ResolvedSource, iter_documents, resolve_source
from .spec import CorpusSpec

#: Bump when document extraction or tokenisation changes meaning, to invalidate old caches.
CORPUS_FORMAT = 1
_PROBE = "Hello world.\n\tÜber 123 -- 'quotes' ..."


@dataclass
class TokenTable:
    """Every non-empty document of a source, tokenised: ``tokens[offsets[i]:offsets[i+1]]`` are
    document ``ids[i]``'s tokens (EOS included when requested); ``digests[i]`` hashes its text."""

    ids: list[str]
    digests: list[str]
    tokens: np.ndarray  # int32 [total]
    lengths: np.ndarray  # int64 [documents]

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64)


def corpus_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """Where tokenised corpora are cached: ``cache_dir``, else ``$HEADSURGEON_CORPUS_CACHE``, else
    ``<headsurgeon cache>/corpora``. The variable lets corpora (which grow with every new source
    and tokenizer) live apart from the converted models; the test suite points it at its own
    folder so that running the tests leaves nothing in the user's cache."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("HEADSURGEON_CORPUS_CACHE")
    if env:
        return Path(env).expanduser()
    from headsurgeon.models.cache import cache_root

    return cache_root() / "corpora"


def tokenizer_fingerprint(tokenizer) -> str:
    """A hash that changes whenever the tokenizer would produce different ids."""
    h = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode("utf-8"))
    else:
        h.update(repr(sorted(tokenizer.get_vocab().items())).encode("utf-8"))
    h.update(repr(list(tokenizer(_PROBE, add_special_tokens=True)["input_ids"])).encode())
    h.update(repr((type(tokenizer).__name__, tokenizer.bos_token_id, tokenizer.eos_token_id)).encode())
    return h.hexdigest()


@contextlib.contextmanager
def _datasets_progress(enabled: bool):
    from datasets.utils import logging as ds_logging

    was = ds_logging.is_progress_bar_enabled()
    (ds_logging.enable_progress_bar if enabled else ds_logging.disable_progress_bar)()
    try:
        yield
    finally:
        (ds_logging.enable_progress_bar if was else ds_logging.disable_progress_bar)()


def _generate(spec: dict, max_documents: int | None):
    """Generator for ``Dataset.from_generator`` (module level so ``datasets`` can pickle it)."""
    resolved = resolve_source(CorpusSpec.from_dict(spec))
    for doc in iter_documents(resolved, max_documents=max_documents):
        yield {"id": doc.id, "text": doc.text, "digest": hashlib.sha1(doc.text.encode("utf-8")).hexdigest()}


def _tokenize(batch: dict, tokenizer, eos_id: int | None) -> dict:
    encoded = tokenizer(batch["text"], add_special_tokens=True, verbose=False)["input_ids"]
    if eos_id is not None:  # one EOS after every document, unless the tokenizer already put it there
        encoded = [ids + [eos_id] if not ids or ids[-1] != eos_id else ids for ids in encoded]
    return {"input_ids": encoded}


def _unwrap_generation_error(exc: BaseException) -> BaseException:
    """``datasets`` wraps errors raised inside the generator; surface our one-line error."""
    cause = exc
    while cause is not None:
        if isinstance(cause, HeadsurgeonError):
            return cause
        cause = cause.__cause__ or cause.__context__
    return exc


def _fingerprint(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def tokenize_source(
    tokenizer,
    spec: CorpusSpec,
    *,
    add_eos: bool = True,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    resolved: ResolvedSource | None = None,
) -> TokenTable:
    """Tokenise every document of ``spec`` (cached), returning flat arrays."""
    import datasets

    resolved = resolved or resolve_source(spec)
    eos_id = tokenizer.eos_token_id if add_eos else None
    if add_eos and eos_id is None:
        raise HeadsurgeonError("this tokenizer has no EOS token to put between documents; pass add_eos_between_docs=False")
    if next(iter_documents(resolved, max_documents=1), None) is None:  # datasets cannot store zero rows
        raise HeadsurgeonError(f"corpus {spec.source} has no text (0 non-empty documents); point it at files that contain text")
    root = corpus_cache_dir(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    doc_key = _fingerprint(
        {"format": CORPUS_FORMAT, "kind": resolved.kind, "location": resolved.location, "content": resolved.fingerprint,
         "field": spec.text_field, "max_documents": spec.max_documents}
    )  # fmt: skip
    features = datasets.Features({"id": datasets.Value("string"), "text": datasets.Value("string"), "digest": datasets.Value("string")})
    with _datasets_progress(progress):
        try:
            docs = datasets.Dataset.from_generator(
                _generate,
                features=features,
                cache_dir=str(root),
                gen_kwargs={"spec": spec.to_dict(), "max_documents": spec.max_documents},
                fingerprint=doc_key,
            )
        except Exception as exc:
            unwrapped = _unwrap_generation_error(exc)
            if unwrapped is exc:
                raise
            raise unwrapped from None
        tok_key = _fingerprint({"docs": doc_key, "tokenizer": tokenizer_fingerprint(tokenizer), "eos": eos_id})
        out_features = datasets.Features(
            {"id": datasets.Value("string"), "digest": datasets.Value("string"), "input_ids": datasets.Sequence(datasets.Value("int32"))}
        )
        tokenized = docs.map(
            _tokenize,
            batched=True,
            batch_size=256,
            remove_columns=["text"],
            fn_kwargs={"tokenizer": tokenizer, "eos_id": eos_id},
            features=out_features,
            new_fingerprint=tok_key,
            desc="tokenising corpus",
        )
    return _to_table(tokenized)


def _to_table(ds) -> TokenTable:
    table = ds.data.table if hasattr(ds.data, "table") else ds.data
    column = table.column("input_ids")
    chunks = [c for c in column.chunks if len(c)]
    if chunks:
        lengths = np.concatenate([c.value_lengths().to_numpy(zero_copy_only=False) for c in chunks]).astype(np.int64)
        tokens = np.concatenate([c.flatten().to_numpy(zero_copy_only=False) for c in chunks]).astype(np.int32, copy=False)
    else:
        lengths, tokens = np.zeros(0, np.int64), np.zeros(0, np.int32)
    return TokenTable(
        ids=table.column("id").to_pylist(), digests=table.column("digest").to_pylist(), tokens=tokens, lengths=lengths
    )
