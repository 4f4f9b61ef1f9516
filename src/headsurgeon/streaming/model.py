"""A model's skeleton without weights, and the checkpoint folder its weights stream from.

:func:`open_streamed` builds the model on the meta device (accelerate's ``init_empty_weights``:
parameters take no memory, buffers such as rotary frequencies are real), switches it to the
eager attention path like :func:`~headsurgeon.models.load_model` does, and reads only the
small tensors every prompt needs before the first block (final norms, position tables, BLOOM's
embedding LayerNorm). The token embedding is read later, row by row, for the tokens the prompt
set actually uses; the output head is never read (diagnosis needs no logits).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.models.adapters import FamilyAdapter, adapter_for, check_model_type
from headsurgeon.models.cpu_bf16 import enable_for_bf16_on_this_cpu
from headsurgeon.models.loading import (
    DEFAULT_MODEL,
    DEFAULT_MODEL_NAME,
    LoadedModel,
    hub_reachable,
    looks_like_hub_id,
    resolve_local_dir,
)

from .shards import INDEX_NAME, SINGLE_NAME, ShardReader


@dataclass
class StreamedModel:
    """A weightless skeleton (``loaded.model`` on the meta device) plus its shard reader.

    ``loaded`` is an ordinary :class:`LoadedModel`, so everything that only needs the adapter,
    the tokenizer or ``describe()`` works unchanged; ``device`` is where each block runs
    (activations stay on the host).
    """

    loaded: LoadedModel
    reader: ShardReader
    folder: Path
    dtype: torch.dtype
    device: torch.device

    @property
    def adapter(self) -> FamilyAdapter:
        return self.loaded.adapter

    @property
    def tokenizer(self):
        return self.loaded.tokenizer

    @property
    def model(self) -> nn.Module:
        return self.loaded.model

    def describe(self) -> dict:
        return self.loaded.describe()

    def block_prefixes(self) -> list[str]:
        a = self.adapter
        return [a.path(a.block_path, layer) + "." for layer in range(a.num_layers)]

    def block_parameter_names(self, layer: int) -> list[str]:
        prefix = self.block_prefixes()[layer]
        return [n for n, _ in self.model.named_parameters(remove_duplicate=False) if n.startswith(prefix)]

    def embedding_name(self) -> str:
        """Parameter name of the token embedding matrix."""
        emb = self.model.get_input_embeddings()
        return next(n for n, p in self.model.named_parameters(remove_duplicate=False) if p is emb.weight)

    def head_parameter_names(self) -> set[str]:
        """Parameters of the output head (never read: no logits are needed)."""
        head = self.model.get_output_embeddings()
        if head is None:
            return set()
        ids = {id(p) for p in head.parameters()}
        return {n for n, p in self.model.named_parameters(remove_duplicate=False) if id(p) in ids}


def resolve_checkpoint_folder(spec: str | None) -> Path:
    """A local folder holding ``config.json`` and safetensors weights for ``spec``.

    ``spec`` is a folder, a ``.gguf`` file or ``None`` (both through the converted cache) or a hub
    id, which is served from the Hugging Face cache (downloading safetensors and config only,
    never pickled ``.bin`` files, when the hub is reachable).
    """
    local = resolve_local_dir(spec)
    if local.exists():
        if not (local / "config.json").is_file():
            raise HeadsurgeonError(f"{local} has no config.json; pass a folder written by save_pretrained or a .gguf file")
        return local
    if not looks_like_hub_id(str(spec)):
        raise HeadsurgeonError(f"model path {spec} does not exist; pass an existing folder, a .gguf file or a hub id")
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken"]
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or not hub_reachable()
    try:
        return Path(snapshot_download(str(spec), allow_patterns=patterns, local_files_only=offline))
    except Exception:  # hub errors come in many types; all end in one line
        where = "the local Hugging Face cache (this machine looks offline)" if offline else "the hub"
        raise HeadsurgeonError(f"could not find '{spec}' in {where}; pass a local folder of safetensors shards") from None


def has_safetensors(folder: Path) -> bool:
    return (folder / INDEX_NAME).is_file() or (folder / SINGLE_NAME).is_file()


def open_streamed(
    spec: str | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> StreamedModel:
    """The meta-device skeleton of ``spec`` with its stem tensors read, ready for block streaming.

    Unsupported architectures are refused from ``config.json`` before anything else is read.
    """
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder = resolve_checkpoint_folder(spec)
    try:
        model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        raise HeadsurgeonError(f"{folder / 'config.json'} is not a readable model config; re-save the model with save_pretrained") from None
    check_model_type(model_type)
    config = AutoConfig.from_pretrained(folder)
    with init_empty_weights():  # parameters on meta, buffers (rotary frequencies) real
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.eval()
    adapter = adapter_for(model)
    adapter.prepare()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    reader = ShardReader(folder, prefix=getattr(model, "base_model_prefix", "") or "")
    name = DEFAULT_MODEL_NAME if spec in (None, "", DEFAULT_MODEL) else (str(spec) if not Path(str(spec)).expanduser().exists() else folder.name)
    from headsurgeon.models.preflight import weights_fingerprint

    loaded = LoadedModel(model=model, tokenizer=tokenizer, adapter=adapter, name=name, source=str(folder),
                         weights_fingerprint=weights_fingerprint(folder))  # the same identity load_model records
    streamed = StreamedModel(loaded=loaded, reader=reader, folder=folder, dtype=dtype, device=torch.device(device))
    enable_for_bf16_on_this_cpu(dtype, device)  # its blocks compute on `device` in `dtype`
    _read_stem(streamed)
    return streamed


def _read_stem(streamed: StreamedModel) -> None:
    """Read every parameter that is neither in a block, the token embedding nor the output head."""
    skip = streamed.head_parameter_names() | {streamed.embedding_name()}
    prefixes = tuple(streamed.block_prefixes())
    names = [n for n, _ in streamed.model.named_parameters() if not n.startswith(prefixes) and n not in skip]
    for name, tensor in streamed.reader.read(names, dtype=streamed.dtype).items():
        assign_parameter(streamed.model, name, tensor)


def assign_parameter(root: nn.Module, name: str, tensor: torch.Tensor) -> None:
    """Put ``tensor`` in place of parameter ``name`` (replacing a meta parameter; no copy)."""
    owner, _, leaf = name.rpartition(".")
    module = root.get_submodule(owner) if owner else root
    module._parameters[leaf] = nn.Parameter(tensor, requires_grad=False)
