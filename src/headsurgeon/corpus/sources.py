"""Reading documents from every kind of corpus source, in a deterministic streaming order.

:func:`resolve_source` inspects a :class:`CorpusSpec` once and fails early with a one-line
error (missing path, Debian package not installed, hub unreachable); :func:`load_documents`
then streams :class:`Document` objects without holding the corpus in memory. Paths are read in
sorted order so two machines with the same files produce the same token stream.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.strict import decode_utf8, load_json_strict, read_utf8

from . import builtin
from .spec import BUILTIN_SOURCES, TEXT_SUFFIXES, CorpusSpec, Document, as_spec, entry_id

_HUB_SPLITS = ("train", "validation", "valid", "test", "dev")
_SOURCE_HELP = "pass a text file, a folder, a .jsonl file, a datasets folder, hf:<name>, python-docs or fortunes"


@dataclass
class ResolvedSource:
    """A checked source: its ``kind``, where it is, a ``fingerprint`` that changes whenever its
    content may have changed (used as the cache key) and the reader that streams it."""

    kind: str
    location: str
    fingerprint: str
    read: Callable[[], Iterator[Document]]


def _stat_fingerprint(paths: list[Path], root: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        st = p.stat()
        h.update(f"{p.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _read_text(path: Path) -> str:
    """A corpus file as text: UTF-8 or a one-line error naming the file (see :mod:`headsurgeon.strict`)."""
    return read_utf8(path, what="corpus file")


def _paragraphs(path: Path, name: str) -> Iterator[Document]:
    """A single text file: each blank-line-separated paragraph is a document (so the held-out
    split has something to choose from)."""
    block: list[str] = []
    for line in _read_text(path).splitlines() + [""]:
        if line.strip():
            block.append(line.rstrip())
        elif block:
            text = "\n".join(block)
            block = []
            yield Document(entry_id(name, text), text)


def _jsonl(path: Path, name: str, field: str) -> Iterator[Document]:
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = decode_utf8(raw, f"{path}:{lineno}", what="corpus line")
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise HeadsurgeonError(f"{path}:{lineno} is not valid JSON ({exc.msg}); fix or delete that line") from None
            if not isinstance(record, dict) or field not in record:
                have = ", ".join(sorted(record)) if isinstance(record, dict) else type(record).__name__
                raise HeadsurgeonError(f"{path}:{lineno} has no '{field}' field (it has: {have}); set text_field to the field holding the text")
            text = record[field]
            if text is None:
                continue
            if not isinstance(text, str):
                raise HeadsurgeonError(f"{path}:{lineno}: field '{field}' is a {type(text).__name__}, not text; set text_field to a text field")
            yield Document(entry_id(name, text), text)


def _folder_files(root: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in filenames:
            p = Path(dirpath) / f
            if not f.startswith(".") and (p.suffix.lower() in TEXT_SUFFIXES or p.suffix.lower() == ".jsonl"):
                out.append(p)
    return sorted(out, key=lambda p: p.relative_to(root).as_posix())


def _folder(root: Path, files: list[Path], field: str) -> Iterator[Document]:
    for p in files:
        rel = p.relative_to(root).as_posix()
        if p.suffix.lower() == ".jsonl":
            yield from _jsonl(p, rel, field)
        else:
            yield Document(rel, _read_text(p))


def _saved_dataset(path: Path, field: str):
    import datasets

    if (path / "dataset_dict.json").is_file():
        try:
            doc = load_json_strict(read_utf8(path / "dataset_dict.json", what="file"))
            splits = doc.get("splits", []) if isinstance(doc, dict) else None
        except (HeadsurgeonError, ValueError):
            splits = None
        if not isinstance(splits, list) or not all(isinstance(x, str) for x in splits):
            raise HeadsurgeonError(f"{path / 'dataset_dict.json'} is broken (not a JSON object with a 'splits' list); "
                                   "save the data set again with save_to_disk, or pass one split's folder")
        raise HeadsurgeonError(
            f"{path} holds a DatasetDict with splits {', '.join(splits) or '?'}; pass one split's folder, e.g. {path / (splits[0] if splits else 'train')}"
        )
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as exc:  # noqa: BLE001 - datasets raises many types for a damaged folder
        raise HeadsurgeonError(f"data set folder {path} cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0][:150] if str(exc) else ''}); "
                               "save it again with save_to_disk") from None
    if not hasattr(ds, "column_names") or isinstance(ds.column_names, dict):
        raise HeadsurgeonError(f"{path} holds a DatasetDict, not one split; pass one split's folder")
    if field not in ds.column_names:
        raise HeadsurgeonError(f"data set {path} has no column '{field}' (it has: {', '.join(ds.column_names)}); set text_field")
    return ds


def _dataset_rows(rows, name: str, field: str) -> Iterator[Document]:
    for i, row in enumerate(rows):
        if i == 0 and field not in row:
            raise HeadsurgeonError(f"data set {name} has no column '{field}' (it has: {', '.join(row)}); set text_field")
        text = row.get(field)
        if text is None:
            continue
        if not isinstance(text, str):
            raise HeadsurgeonError(f"{name}: column '{field}' holds {type(text).__name__} values, not text; set text_field")
        yield Document(entry_id(name, text), text)


def parse_hub_source(source: str) -> tuple[str, str | None, str]:
    """``hf:<name>[:<config>][:<split>]`` -> (name, config, split); a lone second part that looks
    like a split name (or a slice such as ``train[:10%]``) is the split."""
    base, bracket, slice_ = source[3:].partition("[")  # a split slice may itself hold ':'
    parts = base.split(":")
    parts[-1] += bracket + slice_
    name, rest = parts[0].strip(), [p.strip() for p in parts[1:]]
    if not name or len(rest) > 2 or any(not p for p in rest):
        raise HeadsurgeonError(f"'{source}' is not a hub data set reference; write hf:<name>[:<config>][:<split>], e.g. hf:wikitext:wikitext-2-raw-v1:test")
    if len(rest) == 2:
        return name, rest[0], rest[1]
    if len(rest) == 1:
        looks_like_split = rest[0].split("[")[0] in _HUB_SPLITS or "[" in rest[0]
        return (name, None, rest[0]) if looks_like_split else (name, rest[0], "train")
    return name, None, "train"


def _hub_offline() -> bool:
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        return True
    from headsurgeon.models.loading import hub_reachable

    return not hub_reachable()


def _hub(source: str, field: str) -> ResolvedSource:
    name, config, split = parse_hub_source(source)
    if _hub_offline():
        raise HeadsurgeonError(
            f"cannot reach the Hugging Face hub to stream '{source}' (this machine looks offline); on a machine with network run "
            f"datasets.load_dataset('{name}'{', ' + repr(config) if config else ''}, split='{split}').save_to_disk(DIR), copy DIR here and pass it as the corpus"
        )

    def read() -> Iterator[Document]:
        import datasets

        try:
            rows = datasets.load_dataset(name, config, split=split, streaming=True)
        except Exception as exc:  # hub errors come in many types; all end in one line
            raise HeadsurgeonError(f"could not open hub data set '{source}' ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); check the name, config and split") from None
        yield from _dataset_rows(rows, source, field)

    return ResolvedSource("hub", source, f"hub:{name}:{config}:{split}", read)


def resolve_source(spec: CorpusSpec | str) -> ResolvedSource:
    """Check that ``spec.source`` exists and is readable; return how to read it."""
    spec = as_spec(spec)
    src, field = spec.source, spec.text_field
    if src in BUILTIN_SOURCES:
        reader, files = builtin.BUILTIN_READERS[src]
        paths = files()  # raises the "apt-get install" error
        root = builtin.PYTHON_DOCS_DIR if src == "python-docs" else builtin.FORTUNES_DIR
        return ResolvedSource(src, str(root), _stat_fingerprint(paths, root), reader)
    if src.startswith("hf:"):
        return _hub(src, field)
    path = Path(src).expanduser()
    if not path.exists():
        raise HeadsurgeonError(f"corpus source {src} does not exist; {_SOURCE_HELP}")
    path = path.resolve()
    if path.is_dir():
        if (path / "dataset_dict.json").is_file() or ((path / "state.json").is_file() and (path / "dataset_info.json").is_file()):
            ds = _saved_dataset(path, field)
            fingerprint = getattr(ds, "_fingerprint", None) or _stat_fingerprint(sorted(path.glob("*")), path)
            return ResolvedSource("datasets-folder", str(path), f"datasets:{fingerprint}", lambda: _dataset_rows(ds.select_columns([field]), path.name, field))
        files = _folder_files(path)
        if not files:
            raise HeadsurgeonError(f"folder {path} holds no text files ({', '.join(TEXT_SUFFIXES)}, .jsonl); {_SOURCE_HELP}")
        return ResolvedSource("folder", str(path), _stat_fingerprint(files, path), lambda: _folder(path, files, field))
    suffix = path.suffix.lower()
    fingerprint = _stat_fingerprint([path], path.parent)
    if suffix == ".jsonl":
        return ResolvedSource("jsonl", str(path), fingerprint, lambda: _jsonl(path, path.name, field))
    if suffix in TEXT_SUFFIXES:
        return ResolvedSource("text-file", str(path), fingerprint, lambda: _paragraphs(path, path.name))
    raise HeadsurgeonError(f"corpus file {path} has an unsupported type '{suffix}'; use {', '.join(TEXT_SUFFIXES)} or .jsonl")


def iter_documents(resolved: ResolvedSource, *, max_documents: int | None = None) -> Iterator[Document]:
    """Non-empty documents of an already resolved source, at most ``max_documents`` of them."""
    docs = (d for d in resolved.read() if d.text.strip())
    return islice(docs, max_documents) if max_documents else docs


def load_documents(spec: CorpusSpec | str) -> Iterator[Document]:
    """Stream the non-empty documents of ``spec`` in deterministic order (sorted paths), honouring
    ``max_documents``. Source errors are raised here, before the first document is read."""
    spec = as_spec(spec)
    return iter_documents(resolve_source(spec), max_documents=spec.max_documents)
