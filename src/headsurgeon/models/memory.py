"""How much memory a run needs, measured against what the machine has, before anything loads.

The estimate has three parts, each from the config and the prompt shapes alone:

* **weights**: the checkpoint's tensor bytes (from the safetensors headers) converted to the
  run's dtype; in the streamed path, the largest block plus the stem instead;
* **activations**: one forward of one batch on the eager attention path: a few residual-width
  tensors per token, the MLP's intermediate tensor, and one layer's ``[batch, heads, T, T]``
  scores and probabilities (three float32 copies: logits, softmax, the capture's float copy);
  the streamed path adds the residual stream it holds for every prompt between blocks;
* **statistics**: the per-prompt ``[prompts, layers, heads]`` float64 arrays.

It is an estimate (allocator slack and the Python runtime come on top: a fixed 0.6 GB is
added for torch and transformers), meant to refuse a run that cannot fit in seconds rather
than after minutes of swapping or an out-of-memory kill, and to pick the streamed path.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from headsurgeon.errors import HeadsurgeonError

#: Resident memory of an idle Python with torch and transformers imported (measured: ~0.5 GB).
RUNTIME_BYTES = 600 * 2**20
GB = 1e9


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a run needs (``weights + activations + statistics + runtime``) and bytes available."""

    weights: int
    activations: int
    statistics: int
    runtime: int
    available: int | None
    streamed: bool

    @property
    def total(self) -> int:
        return self.weights + self.activations + self.statistics + self.runtime

    @property
    def fits(self) -> bool:
        return self.available is None or self.total <= self.available

    def to_dict(self) -> dict:
        return {**asdict(self), "total": self.total}

    def summary(self) -> str:
        avail = "unknown" if self.available is None else f"{self.available / GB:.1f} GB"
        return (f"about {self.total / GB:.1f} GB (weights {self.weights / GB:.1f}, activations {self.activations / GB:.2f}, "
                f"statistics {self.statistics / GB:.3f}, runtime {self.runtime / GB:.1f}); {avail} available")


def available_memory(device: str | torch.device = "cpu") -> int | None:
    """Free bytes on ``device``: host memory the kernel can give (``MemAvailable``, capped by a
    cgroup limit), or the accelerator's free memory; ``None`` when it cannot be told."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type != "cpu":
        return None
    try:
        import psutil

        avail = int(psutil.virtual_memory().available)
    except Exception:  # psutil missing or unsupported platform: no check
        return None
    try:  # inside a container the cgroup limit may be far below the host's free memory
        limit = open("/sys/fs/cgroup/memory.max").read().strip()
        used = int(open("/sys/fs/cgroup/memory.current").read().strip())
        if limit != "max":
            avail = min(avail, int(limit) - used)
    except (OSError, ValueError):
        pass
    return avail


def _dim(config, *names, default=0) -> int:
    for n in names:
        v = getattr(config, n, None)
        if isinstance(v, int) and v > 0:
            return v
    return default


def activation_bytes(config, *, batch_size: int, tokens: int, dtype: torch.dtype) -> int:
    """One forward of one ``batch_size x tokens`` batch (see the module docstring)."""
    size = torch.finfo(dtype).bits // 8 if dtype.is_floating_point else 4
    hidden = _dim(config, "hidden_size", "n_embd")
    inter = _dim(config, "intermediate_size", "n_inner", default=4 * hidden)
    heads = _dim(config, "num_attention_heads", "n_head")
    residual = 6 * batch_size * tokens * hidden * size
    mlp = 2 * batch_size * tokens * inter * size
    maps = 3 * batch_size * heads * tokens * tokens * 4
    return residual + mlp + maps


def estimate_memory(
    config,
    *,
    weight_bytes: int,
    block_bytes: int = 0,
    stem_bytes: int = 0,
    prompts: int,
    tokens: int,
    batch_size: int,
    dtype: torch.dtype = torch.float32,
    streamed: bool = False,
    held_activation_bytes: int | None = None,
    device: str | torch.device = "cpu",
) -> MemoryEstimate:
    """The memory estimate of one diagnosis-like run (prompts padded to ``tokens``).

    ``weight_bytes`` is the whole model in the run dtype; for ``streamed`` runs
    ``block_bytes`` (largest block, run dtype) and ``stem_bytes`` are what is resident instead,
    and the residual stream of every prompt (capped by ``held_activation_bytes``, the spill
    budget) is held between blocks.
    """
    size = torch.finfo(dtype).bits // 8
    layers = _dim(config, "num_hidden_layers", "n_layer")
    heads = _dim(config, "num_attention_heads", "n_head")
    hidden = _dim(config, "hidden_size", "n_embd")
    acts = activation_bytes(config, batch_size=min(batch_size, prompts), tokens=tokens, dtype=dtype)
    if streamed:
        held = prompts * tokens * hidden * size
        if held_activation_bytes is not None:
            held = min(held, held_activation_bytes)
        acts += held
    # a safetensors read maps the block's shard while copying out of it: count the block twice
    weights = 2 * block_bytes + stem_bytes if streamed else weight_bytes
    return MemoryEstimate(
        weights=int(weights),
        activations=int(acts),
        statistics=int(3 * prompts * layers * heads * 8),
        runtime=RUNTIME_BYTES,
        available=available_memory(device),
        streamed=streamed,
    )


def require_fits(estimate: MemoryEstimate, *, what: str, model: str) -> None:
    """One-line error when ``estimate`` does not fit, naming the streamed path."""
    if estimate.fits:
        return
    raise HeadsurgeonError(
        f"{what} of {model} needs {estimate.summary()}; use the block-streamed path "
        "(`headsurgeon diagnose --stream` / `extremes --stream`, peak one block plus activations), "
        "or place the model with --device-map auto --max-memory ... --offload-folder ..."
    )
