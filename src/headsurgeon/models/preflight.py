"""What a model is, read without reading its weights: checks that must come before any work.

Commands check everything cheap first (options, files, a plan against the model) so that a bad
input fails in a second, not after the model has loaded and the stock model was evaluated.
This module answers, from a model's ``config.json`` (and the headers of its weight files):

* :func:`model_facts`: family, shape and position limit of ``spec``, or ``None`` when that needs
  the weights (a hub id not in the local cache, a GGUF file not converted yet);
* :func:`weights_fingerprint`: a cheap identity of the weights (see its docstring);
* :func:`check_gguf_file`: a ``.gguf`` file that is empty, truncated or not GGUF at all is
  refused with one line before ``transformers`` tries to parse it.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from headsurgeon.errors import HeadsurgeonError

#: Bytes of tensor data sampled per weight file for the fingerprint (start, middle, end).
_SAMPLE = 1 << 16


@dataclass(frozen=True)
class ModelFacts:
    """A model as its ``config.json`` describes it (``describe`` has the keys outputs record)."""

    folder: Path
    describe: dict  # family, model_type, num_layers, num_heads, num_kv_heads, head_dim, hidden_size
    max_positions: int | None  # longest sequence the position table allows (None: no table, e.g. ALiBi)


def _read_header(path: Path) -> tuple[bytes, dict, int]:
    """The raw JSON header of a safetensors file, parsed, and where its data starts."""
    with path.open("rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise HeadsurgeonError(f"{path} is not a safetensors file (shorter than 8 bytes); re-save the model")
        (n,) = struct.unpack("<Q", head)
        size = path.stat().st_size
        if n <= 1 or 8 + n > size:
            raise HeadsurgeonError(f"{path} is not a complete safetensors file (header says {n} bytes, file has {size}); re-save the model")
        raw = fh.read(n)
    try:
        header = json.loads(raw)
    except ValueError:
        raise HeadsurgeonError(f"{path} has a broken safetensors header; re-save the model") from None
    if not isinstance(header, dict):
        raise HeadsurgeonError(f"{path} has a broken safetensors header; re-save the model")
    return raw, header, 8 + n


def weights_fingerprint(folder: str | Path) -> str | None:
    """A short identity of a model's weights, cheap to compute (``None``: no safetensors files).

    For every ``*.safetensors`` file of ``folder`` (sorted by name) it hashes (SHA-256) the file
    name, the JSON header (every tensor's name, dtype, shape and offsets, plus the metadata) and
    three 64 KiB samples of the tensor data: at its start, its middle and its end. Two models of
    the same shape saved the same way share the header but not the samples; reading is under
    1 MiB per file however big the model. It identifies files, not values: the same weights
    re-saved in another dtype or sharding get another fingerprint. Returns the first 16 hex digits.
    """
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        raw, _, start = _read_header(path)
        digest.update(path.name.encode() + b"\0" + raw)
        size = path.stat().st_size
        with path.open("rb") as fh:
            for at in sorted({start, start + max(0, (size - start) // 2 - _SAMPLE // 2), max(start, size - _SAMPLE)}):
                fh.seek(at)
                digest.update(fh.read(_SAMPLE))
    return digest.hexdigest()[:16]


def facts_from_config(config, folder: Path, name: str | None = None) -> ModelFacts:
    """Facts from a ``transformers`` config object, through the family's adapter, plus the
    weights fingerprint of ``folder`` (headers and samples only)."""
    from .adapters import check_model_type

    cls = check_model_type(getattr(config, "model_type", None))
    # The adapter reads only the config in its constructor: a stand-in with no parameters serves.
    adapter = cls(SimpleNamespace(config=config, named_parameters=lambda: iter(())))
    try:
        shape = adapter.describe()
    except (AttributeError, KeyError, TypeError):  # a family whose description looks at modules (MPT): the shape alone
        shape = {"family": adapter.family, "model_type": config.model_type, "num_layers": adapter.num_layers,
                 "num_heads": adapter.num_heads, "num_kv_heads": adapter.num_kv_heads, "head_dim": adapter.head_dim,
                 "hidden_size": adapter.hidden_size}
    describe = {"name": name or folder.name, **shape}
    fingerprint = weights_fingerprint(folder)
    if fingerprint:
        describe["weights_fingerprint"] = fingerprint
    return ModelFacts(folder=folder, describe=describe, max_positions=adapter.max_positions)


def _config_of(folder: Path):
    from transformers import AutoConfig

    from .adapters import check_model_type

    path = folder / "config.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        raise HeadsurgeonError(f"{path} is not readable JSON; pass a folder written by save_pretrained") from None
    if not isinstance(doc, dict):
        raise HeadsurgeonError(f"{path} is not a model configuration; pass a folder written by save_pretrained")
    check_model_type(doc.get("model_type"))  # the one-line unsupported-architecture error
    try:
        return AutoConfig.from_pretrained(str(folder))
    except Exception as exc:  # noqa: BLE001 - transformers raises many types for a bad config
        raise HeadsurgeonError(f"{path} is not a valid model configuration ({str(exc).splitlines()[0][:200]}); "
                               "pass a folder written by save_pretrained") from None


def model_facts(spec: str | None) -> ModelFacts | None:
    """Facts about ``spec`` without its weights; ``None`` when only loading can tell.

    A local folder without ``config.json``, an unsupported architecture and a broken GGUF file
    are refused here, with the same one-line errors :func:`~headsurgeon.models.load_model` gives.
    """
    from .loading import DEFAULT_MODEL, DEFAULT_MODEL_NAME, default_gguf_path, looks_like_hub_id

    name = None
    if spec in (None, "", DEFAULT_MODEL):
        folder, name = _converted(default_gguf_path()), DEFAULT_MODEL_NAME
    elif str(spec).endswith(".gguf"):
        path = Path(spec).expanduser()
        name = path.stem
        if not path.is_file():
            raise HeadsurgeonError(f"GGUF file {path} does not exist; check the path")
        folder = _converted(path)
        if folder is None:  # converted files were read once already
            check_gguf_file(path)
    else:
        path = Path(spec).expanduser()
        if path.exists():
            if not (path / "config.json").is_file():
                raise HeadsurgeonError(f"{path} has no config.json; pass a folder written by save_pretrained or a .gguf file")
            folder = path.resolve()
        elif not looks_like_hub_id(str(spec)):
            raise HeadsurgeonError(f"model path {spec} does not exist; pass an existing folder, a .gguf file or a hub id")
        else:
            folder = hub_cached_folder(str(spec))
    if folder is None:
        return None
    return facts_from_config(_config_of(folder), folder, name)


def _converted(gguf: Path) -> Path | None:
    from .cache import converted_model_dir
    from .loading import _CONVERTED_MARKER

    target = converted_model_dir(gguf)
    return target if (target / _CONVERTED_MARKER).is_file() else None


def hub_cached_folder(spec: str) -> Path | None:
    """The hub cache's snapshot folder of ``spec`` (``None``: not cached), never the network."""
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(spec, local_files_only=True))
    except Exception:  # noqa: BLE001 - not in the cache: only loading can tell
        return None
    return folder if (folder / "config.json").is_file() else None


#: GGUF files start with these 4 bytes, then a little-endian uint32 version, then the tensor and
#: metadata counts (uint64 each, from version 2 on).
_GGUF_MAGIC = b"GGUF"
#: Byte sizes of the scalar metadata value types (GGUF spec: uint8 .. float64, bool); 8 is a
#: string (uint64 length + bytes), 9 an array (uint32 item type, uint64 count, items).
_GGUF_SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


class _Truncated(Exception):
    pass


def _gguf_layout(buf, size: int) -> tuple[int, int]:
    """Walk the metadata and tensor table of a GGUF file (a memory map): the largest byte offset
    any tensor needs, and the number of tensors. Nothing is decoded beyond lengths and offsets
    (``gguf.GGUFReader`` builds an object per vocabulary entry: half a minute for SmolLM2)."""
    from gguf.constants import GGML_QUANT_SIZES

    pos = 8

    def take(fmt: str):
        nonlocal pos
        n = struct.calcsize(fmt)
        if pos + n > size:
            raise _Truncated
        out = struct.unpack_from(fmt, buf, pos)
        pos += n
        return out[0] if len(out) == 1 else out

    def skip_string() -> bytes:
        nonlocal pos
        n = take("<Q")
        if pos + n > size:
            raise _Truncated
        pos += n
        return bytes(buf[pos - n:pos])

    def skip_value(kind: int):
        nonlocal pos
        if kind in _GGUF_SCALAR:
            value = buf[pos:pos + _GGUF_SCALAR[kind]]
            if pos + _GGUF_SCALAR[kind] > size:
                raise _Truncated
            pos += _GGUF_SCALAR[kind]
            return value
        if kind == 8:
            return skip_string()
        if kind == 9:
            item, count = take("<IQ")
            if item in _GGUF_SCALAR:
                if pos + count * _GGUF_SCALAR[item] > size:
                    raise _Truncated
                pos += count * _GGUF_SCALAR[item]
            else:
                for _ in range(count):
                    skip_value(item)
            return None
        raise ValueError(f"unknown metadata value type {kind}")

    n_tensors, n_kv = take("<QQ")
    alignment = 32
    for _ in range(n_kv):
        key = skip_string()
        kind = take("<I")
        value = skip_value(kind)
        if key == b"general.alignment" and value is not None and len(value) == 4:
            alignment = struct.unpack("<I", bytes(value))[0] or 32
    tensors = []
    for _ in range(n_tensors):
        skip_string()
        n_dims = take("<I")
        dims = [take("<Q") for _ in range(n_dims)]
        kind, offset = take("<IQ")
        if kind not in GGML_QUANT_SIZES:
            raise ValueError(f"unknown tensor type {kind}")
        block, type_size = GGML_QUANT_SIZES[kind]
        elements = 1
        for d in dims:
            elements *= d
        tensors.append(offset + elements // block * type_size)
    data_start = (pos + alignment - 1) // alignment * alignment
    return data_start + max(tensors, default=0), n_tensors


def check_gguf_file(path: Path) -> None:
    """Refuse, in one line, a ``.gguf`` path that is missing, empty, not GGUF or truncated.

    Reads the header (magic, version, counts), walks the metadata and the tensor table, and
    checks that the last tensor ends inside the file: under a second even for large files.
    """
    import mmap

    if not path.is_file():
        raise HeadsurgeonError(f"GGUF file {path} does not exist; check the path")
    size = path.stat().st_size
    if size == 0:
        raise HeadsurgeonError(f"GGUF file {path} is empty; download it again")
    with path.open("rb") as fh:
        head = fh.read(24)
        if head[:4] != _GGUF_MAGIC:
            raise HeadsurgeonError(f"{path} is not a GGUF file (it does not start with 'GGUF'); pass a .gguf model file or a model folder")
        if len(head) < 24:
            raise HeadsurgeonError(f"GGUF file {path} is truncated ({size} bytes, shorter than its header); download it again")
        version = struct.unpack("<I", head[4:8])[0]
        if version not in (2, 3):
            raise HeadsurgeonError(f"GGUF file {path} has version {version}; headsurgeon reads GGUF versions 2 and 3")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            try:
                needed, n_tensors = _gguf_layout(buf, size)
            except _Truncated:
                raise HeadsurgeonError(f"GGUF file {path} is truncated (it ends inside its metadata or tensor table); download it again") from None
            except (ValueError, OverflowError, struct.error, MemoryError) as exc:
                raise HeadsurgeonError(f"GGUF file {path} is damaged ({exc}); download it again") from None
    if n_tensors == 0:
        raise HeadsurgeonError(f"GGUF file {path} holds no tensors; pass a model file")
    if needed > size:
        raise HeadsurgeonError(f"GGUF file {path} is truncated (its tensors need {needed} bytes, the file has {size}); download it again")
