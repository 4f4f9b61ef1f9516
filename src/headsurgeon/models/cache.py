"""Where headsurgeon keeps converted models.

De-quantising a GGUF file takes ~20 s; the result is saved once as a plain ``save_pretrained``
directory (safetensors) and reused. The cache root is ``$HEADSURGEON_CACHE`` if set, else
``$XDG_CACHE_HOME/headsurgeon``, else ``~/.cache/headsurgeon``. Move it by moving the folder and
pointing ``HEADSURGEON_CACHE`` at the new place; delete it to force a re-conversion.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    env = os.environ.get("HEADSURGEON_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "headsurgeon"


def converted_model_dir(gguf_path: Path) -> Path:
    """Cache folder for a converted GGUF file, keyed by its name, size and mtime."""
    st = gguf_path.stat()
    key = f"{gguf_path.stem}-{st.st_size:x}-{int(st.st_mtime):x}"
    return cache_root() / "models" / key
