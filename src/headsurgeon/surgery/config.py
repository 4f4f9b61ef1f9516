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

PRECISIONS = ("fp32", "bf16", "fp16")
BEST_METRICS = {"heldout_ppl": "min", "train_ppl": "min", "other_ppl": "min", "targets_healthy": "max"}


@dataclass(frozen=True)
class SurgeryConfig:
    corpus: str = "python-docs"  # training text: file, folder, .jsonl, datasets folder, hf:<name>, python-docs, fortunes
    other_corpus: str | None = "fortunes"  # a different distribution for held-out perplexity (None: skip)
    seq_len: int = 512  # tokens per training sequence
    batch_size: int = 1  # sequences per micro-batch
    grad_accum: int = 8  # micro-batches per optimizer step
    lr: float = 5e-5  # AdamW learning rate (surgical slices only)
    weight_decay: float = 0.0  # applied to the surgical slices only
    warmup_fraction: float = 0.1  # share of steps with linear warmup, then cosine decay to 0
    max_steps: int | None = None  # optimizer steps (overrides epochs when set)
    epochs: int = 3  # passes over the training sequences when max_steps is None
    clip_norm: float = 1.0  # gradient clipping (0: off)
    precision: str = "bf16"  # fp32 | bf16 (fp32 master copies of the slices) | fp16 (needs allow_fp16)
    allow_fp16: bool = False  # fp16 underflowed in the paper; refuse it unless asked
    gradient_checkpointing: bool = True
    eval_every: int = 50  # optimizer steps between evaluations (and checkpoints); epoch ends always evaluate
    eval_sequences: int = 16  # sequences for each perplexity estimate
    eval_batch_size: int = 4
    diagnose_every_eval: bool = True  # re-diagnose all heads at every evaluation
    best_metric: str = "heldout_ppl"  # heldout_ppl | train_ppl | other_ppl | targets_healthy
    heldout_fraction: float = 0.1
    max_train_tokens: int | None = None  # cap on corpus size (tokens) for quick runs
    seed: int = 0  # data order, dropout and re-initialisation
    reinitialise: bool = True  # False: train the same slices from their current values (the negative control)
    keep_epoch_models: bool = True  # save_pretrained at each epoch end
    cache_frozen_prefix: bool = False  # after the first epoch, skip the frozen layers below the lowest target (prefix_cache.py)
    prefix_cache_gb: float = 4.0  # memory cap for that cache; sequences beyond it are recomputed

    def __post_init__(self):
        if self.lr <= 0:
            raise HeadsurgeonError(f"learning rate must be > 0, got {self.lr}; pass e.g. --lr 5e-5")
        if self.precision not in PRECISIONS:
            raise HeadsurgeonError(f"--precision must be one of {', '.join(PRECISIONS)}")
        if self.precision == "fp16" and not self.allow_fp16:
            raise HeadsurgeonError("fp16 training is off by default (it underflowed in the paper); use bf16, or pass --allow-fp16")
        if self.best_metric not in BEST_METRICS:
            raise HeadsurgeonError(f"--best-metric must be one of {', '.join(BEST_METRICS)}")
        for name in ("seq_len", "batch_size", "grad_accum", "eval_every", "eval_sequences", "epochs"):
            if getattr(self, name) < 1:
                raise HeadsurgeonError(f"--{name.replace('_', '-')} must be at least 1")
        if self.prefix_cache_gb < 0:
            raise HeadsurgeonError(f"--prefix-cache-gb must be >= 0, got {self.prefix_cache_gb}")
        if self.max_steps is not None and self.max_steps < 1:
            raise HeadsurgeonError("--max-steps must be at least 1")
        if self.weight_decay < 0 or not 0 <= self.warmup_fraction < 1:
            raise HeadsurgeonError("--weight-decay must be >= 0 and --warmup-fraction in [0, 1)")

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


def preset(name: str) -> SurgeryConfig:
    if name not in PRESETS:
        raise HeadsurgeonError(f"unknown preset '{name}'; choose from {', '.join(PRESETS)}")
    return PRESETS[name]
