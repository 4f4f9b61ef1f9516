"""One flat, typed configuration for a toy run, and the named presets.

Flat on purpose: every knob of a run (task, model, optimiser, logging) sits in one dataclass
that is saved verbatim beside every output, so a JSON file alone says how it was made.
Each field carries its help text in ``metadata["help"]``; the CLI shows it for ``--set``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from headsurgeon import flatconfig
from headsurgeon.errors import HeadsurgeonError
from headsurgeon.options import check_fields, option


def _f(default: Any, help: str, **rule: Any) -> Any:  # noqa: A002 - "help" reads best here
    """A field with its help text and rule (:func:`headsurgeon.options.option`); ``--set`` names it ``key=``."""
    return option(default, help, **rule)


@dataclass(frozen=True)
class ToyConfig:
    """Everything that defines a Bigram-Backcopy run. Defaults are the paper's 1-layer setting."""

    # --- task -----------------------------------------------------------------------------
    text_path: str | None = _f(None, "text file for bigram statistics; None = fortunes, then Python docs")
    n_chars: int = _f(32, "keep the n most frequent characters; all others become one OTHER token", integer=True, min=2, flag="n_chars")
    lowercase: bool = _f(True, "lower-case the text before counting (smaller, better-filled bigram matrix)")
    n_triggers: int = _f(3, "k: the k most frequent tokens become triggers", integer=True, min=1, flag="n_triggers")
    whitespace_triggers: bool = _f(False, "allow the space to be a trigger (it makes 'x x x' repeat loops)")
    seq_len: int = _f(256, "positions the model reads, BOS included (one more token is generated as the last target)", integer=True, min=4, flag="seq_len")
    # --- model ----------------------------------------------------------------------------
    n_layers: int = _f(1, "transformer layers (1-3 in the paper)", integer=True, min=1, flag="n_layers")
    n_heads: int = _f(1, "attention heads per layer", integer=True, min=1, flag="n_heads")
    dim: int = _f(256, "residual width (must be divisible by n_heads)", integer=True, min=1, flag="dim")
    mlp: bool = _f(True, "add a 4x GELU MLP after attention in every layer")
    layer_norm: bool = _f(True, "pre-LayerNorm before attention/MLP and before the unembedding")
    attention: str = _f("softmax", "'softmax' or 'relu' (relu(scores) / number of visible keys)", choices=("softmax", "relu"), flag="attention")
    no_attn: str = _f("", "comma-separated layers without attention, e.g. '0,2' (the paper's no_attn)")
    no_mlp: str = _f("", "comma-separated layers without MLP (when mlp is on), e.g. '1'")
    # --- optimisation ---------------------------------------------------------------------
    optimizer: str = _f("adamw", "'adamw' (betas 0.9, 0.99 as in the paper) or 'sgd' (momentum below)", choices=("adamw", "sgd"), flag="optimizer")
    lr: float = _f(3e-4, "learning rate (constant)", above=0, flag="lr")
    weight_decay: float = _f(1e-4, "weight decay", min=0, flag="weight_decay")
    momentum: float = _f(0.9, "SGD momentum", min=0, below=1, flag="momentum")
    batch_size: int = _f(512, "sequences per step, freshly generated every step", integer=True, min=1, flag="batch_size")
    steps: int = _f(10_000, "optimiser steps", integer=True, min=1, flag="steps")
    seed: int = _f(0, "seeds model init, training data and (with +1) the evaluation batch", integer=True, min=0, flag="seed")
    sgd_lr: float = _f(0.03, "learning rate of the SGD variant that `compare` trains", above=0, flag="sgd_lr")
    # --- logging --------------------------------------------------------------------------
    log_every: int = _f(50, "measure the dynamics every N steps (and at step 0 and the end)", integer=True, min=1, flag="log_every")
    eval_batch_size: int = _f(64, "sequences in the fixed evaluation batch the dynamics use", integer=True, min=1, flag="eval_batch_size")
    threads: int = _f(0, "torch CPU threads; 0 = leave torch's default", integer=True, min=0, flag="threads")

    def __post_init__(self) -> None:
        check_fields(self)
        if self.dim % self.n_heads:
            raise HeadsurgeonError(f"dim={self.dim} is not divisible by n_heads={self.n_heads}; change one")
        if self.seq_len < 4:
            raise HeadsurgeonError(f"seq_len={self.seq_len} is too short; use at least 4")
        if not 1 <= self.n_triggers < self.n_chars:
            raise HeadsurgeonError(f"n_triggers={self.n_triggers} must be in 1..n_chars-1; change it")
        for name in ("no_attn", "no_mlp"):
            bad = [i for i in layer_set(getattr(self, name)) if not 0 <= i < self.n_layers]
            if bad:
                raise HeadsurgeonError(f"{name}={getattr(self, name)!r} names layers outside 0..{self.n_layers - 1}; fix it")
        if len(layer_set(self.no_attn)) >= self.n_layers:
            raise HeadsurgeonError("no_attn removes every attention layer; keep at least one")

    def replace(self, **changes: Any) -> ToyConfig:
        """A copy with ``changes`` applied (validated again)."""
        return flatconfig.replace_fields(self, "toy", **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToyConfig:
        return cls().replace(**data)


def layer_set(text: str) -> frozenset[int]:
    """Parse '0,2' into {0, 2}; '' is the empty set."""
    try:
        return frozenset(int(p) for p in str(text).replace(" ", "").split(",") if p)
    except ValueError:
        raise HeadsurgeonError(f"{text!r} is not a comma-separated list of layer numbers; write e.g. '0,2'") from None


def field_names() -> list[str]:
    return flatconfig.field_names(ToyConfig)


def field_help() -> dict[str, str]:
    return flatconfig.field_help(ToyConfig)


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``key=value`` into a typed pair, using the field's declared type."""
    return flatconfig.parse_override(ToyConfig, text, "toy", "lr=1e-3")


#: The small settings are what fits a shared 2-core CPU (SCIENCE.md: 1 layer, dim 64, length 32,
#: batch 16 and a raised learning rate; we measured 1e-2 to form the sink within ~400 steps and
#: ReLU attention to need ~1500 to learn the copy). The paper settings are the published ones
#: (16 s per step for paper-1l, 59 s for paper-3l here: for a machine with a GPU). Small
#: presets use one thread: on the shared 2-core CPU two threads made a tiny-1l step 25x slower.
_SMALL = dict(dim=64, seq_len=32, batch_size=16, lr=1e-2, mlp=False, layer_norm=False,
              log_every=25, eval_batch_size=64, sgd_lr=0.3, threads=1)

PRESETS: dict[str, tuple[str, ToyConfig]] = {
    "tiny-1l": (
        "1 layer, 1 head, dim 64, length 32, batch 16, attention only, AdamW 1e-2, 1500 steps",
        ToyConfig(**_SMALL, n_layers=1, steps=1500),
    ),
    "small-3l": (
        "3 layers with MLP and LayerNorm, dim 64, length 32, batch 16, AdamW 3e-3, 6000 steps",
        ToyConfig(**{**_SMALL, "mlp": True, "layer_norm": True, "lr": 3e-3, "log_every": 100},
                  n_layers=3, steps=6000),
    ),
    "minimal-3l": (
        "the paper's minimal residual-peak layout (MLP | attention | MLP, no_attn='0,2'), "
        "LayerNorm, dim 64, length 32, batch 16, AdamW 3e-3, wd 0.1, 6000 steps",
        ToyConfig(**{**_SMALL, "mlp": True, "layer_norm": True, "lr": 3e-3, "log_every": 100,
                     "sgd_lr": 0.3}, n_layers=3, no_attn="0,2", weight_decay=0.1, steps=6000),
    ),
    "paper-1l": (
        "the paper's 1-layer run: dim 256, length 256, batch 512, AdamW 3e-4, wd 1e-4, 10k steps",
        ToyConfig(n_layers=1),
    ),
    "paper-3l": (
        "the paper's 3-layer run (MLP + LayerNorm), otherwise as paper-1l",
        ToyConfig(n_layers=3),
    ),
}


def preset(name: str, **changes: Any) -> ToyConfig:
    """The named preset, with ``changes`` applied."""
    return flatconfig.pick_preset(PRESETS, name, "toy", **changes)
