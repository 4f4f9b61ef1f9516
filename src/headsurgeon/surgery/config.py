"""Surgery training configuration: one flat, typed dataclass, saved beside every run.

Defaults follow the paper (Schallon 2026): AdamW lr 5e-5 without weight decay, linear warmup
then cosine decay, batch 1 x 8 gradient-accumulation steps, clip norm 1.0, gradient
checkpointing, sequence length 512, bf16. The ``cpu`` preset is what we measured to move
freshly re-initialised heads within a few hundred steps on a 2-core CPU (see README): the
paper's 5e-5 barely moves them at that budget.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.options import check_fields, option

PRECISIONS = ("fp32", "bf16", "fp16")
BEST_METRICS = {"heldout_ppl": "min", "train_ppl": "min", "other_ppl": "min", "targets_healthy": "max"}


@dataclass(frozen=True)
class SurgeryConfig:
    corpus: str = option("python-docs", "training text: file, folder, .jsonl, datasets folder, hf:<name>, python-docs, fortunes")
    other_corpus: str | None = option("fortunes", "a different distribution for held-out perplexity (none: skip it)")
    seq_len: int = option(512, "tokens per training sequence", integer=True, min=1)
    batch_size: int = option(1, "sequences per micro-batch", integer=True, min=1)
    grad_accum: int = option(8, "micro-batches per optimizer step", integer=True, min=1)
    lr: float = option(5e-5, "AdamW learning rate (surgical slices only)", above=0, hint="pass e.g. --lr 5e-5")
    weight_decay: float = option(0.0, "weight decay, applied to the surgical slices only", min=0)
    warmup_fraction: float = option(0.1, "share of steps with linear warmup, then cosine decay to 0", min=0, below=1)
    max_steps: int | None = option(None, "optimizer steps (overrides epochs when set; none: epochs decide); with patience, the cap", integer=True, min=1)
    epochs: int = option(3, "passes over the training sequences when max_steps is not set", integer=True, min=1)
    clip_norm: float = option(1.0, "gradient clipping norm (0: off)", min=0)
    precision: str = option("bf16", "fp32 | bf16 (fp32 master copies of the slices) | fp16 (needs --allow-fp16)", choices=PRECISIONS)
    allow_fp16: bool = option(False, "fp16 underflowed in the paper; refuse it unless asked")
    gradient_checkpointing: bool = option(True, "recompute activations in backward to save memory")
    eval_every: int = option(50, "optimizer steps between evaluations (and checkpoints); epoch ends always evaluate", integer=True, min=1)
    eval_sequences: int = option(16, "sequences for each perplexity estimate", integer=True, min=1)
    eval_batch_size: int = option(4, "sequences per evaluation forward pass", integer=True, min=1)
    diagnose_every_eval: bool = option(True, "re-diagnose all heads at every evaluation")
    best_metric: str = option("heldout_ppl", "metric that picks the best model", choices=tuple(BEST_METRICS))
    patience: int | None = option(None, "early stopping: stop after this many evaluations without a new best (none: train to the cap; the schedule stays defined over the cap)", integer=True, min=1)
    heldout_fraction: float = option(0.1, "share of the corpus documents held out for perplexity", min=0, below=1)
    max_train_tokens: int | None = option(None, "cap on corpus size (tokens) for quick runs (none: the whole corpus)", integer=True, min=1)
    seed: int = option(0, "data order, dropout and re-initialisation", integer=True, min=0)
    reinitialise: bool = option(True, "off: train the same slices from their current values (the negative control)")
    keep_epoch_models: bool = option(True, "save_pretrained at each epoch end")
    cache_frozen_prefix: bool = option(False, "after the first epoch, skip the frozen layers below the lowest target (prefix_cache.py)")
    prefix_cache_gb: float = option(4.0, "memory cap (GiB) for that cache; sequences beyond it are recomputed", min=0)

    def __post_init__(self):
        check_fields(self)  # every range, choice and finiteness rule above
        if self.precision == "fp16" and not self.allow_fp16:
            raise HeadsurgeonError("fp16 training is off by default (it underflowed in the paper); use bf16, or pass --allow-fp16")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict) -> SurgeryConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})

    def with_(self, **changes) -> SurgeryConfig:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


PRESETS: dict[str, SurgeryConfig] = {
    "paper": SurgeryConfig(),
    # Measured on SmolLM2-135M, 2 CPU cores (README "Surgery on the default model").
    # SmolLM2-135M costs ~2.5 s per 512-token forward on 2 idle cores; gradient checkpointing
    # doubled the step time and bf16 autocast was no faster than fp32 here, so both are off.
    "cpu": SurgeryConfig(seq_len=128, batch_size=2, grad_accum=1, lr=1e-3, max_steps=200, eval_every=50, eval_sequences=8,
                         precision="fp32", gradient_checkpointing=False),
    # Seconds, for tests and trying the pipeline on tiny models.
    "tiny": SurgeryConfig(
        seq_len=32, batch_size=2, grad_accum=2, lr=1e-2, max_steps=12, eval_every=4, eval_sequences=4,
        precision="fp32", gradient_checkpointing=False, other_corpus=None,
    ),
}


def is_better(value: float, best: float | None, metric: str) -> bool:
    """Whether ``value`` of ``metric`` beats the best so far (``None``: nothing yet)."""
    if best is None:
        return True
    return value < best if BEST_METRICS[metric] == "min" else value > best


def auto_preset() -> tuple[str, str]:
    """The preset that fits this machine, and why: ``paper`` with a CUDA GPU, else ``cpu``.

    The paper's settings (sequence 512, accumulation 8, three epochs) took about 2 h 21 min for
    SmolLM2-135M on 2 CPU cores; the ``cpu`` preset was measured to revive heads in minutes.
    """
    import torch

    if torch.cuda.is_available():
        return "paper", f"a CUDA GPU was found ({torch.cuda.get_device_name(0)})"
    return "cpu", "no CUDA GPU was found; --preset paper gives the paper's settings (hours on a CPU)"


def preset(name: str) -> SurgeryConfig:
    """The :class:`SurgeryConfig` of a named preset: ``paper`` (the paper's training settings),
    ``cpu`` (measured for a 2-core CPU: shorter sequences, higher lr, 200 steps) or ``tiny``
    (seconds, for tests and tiny models). ``auto`` picks ``paper`` or ``cpu`` for this machine
    (:func:`auto_preset`). Change single fields with ``preset(name).with_(lr=..., ...)``."""
    if name == "auto":
        name = auto_preset()[0]
    if name not in PRESETS:
        raise HeadsurgeonError(f"unknown preset '{name}'; choose from auto, {', '.join(PRESETS)}")
    return PRESETS[name]
