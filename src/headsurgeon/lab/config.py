"""One flat, typed configuration for a lab (every run of it shares it) and the named presets.

A lab trains one small causal LM per (position encoding, seed) from scratch. Everything except
the encoding is shared by the runs of a lab: corpus, tokenizer, width, depth, heads, optimiser,
schedule, budget and, for a given seed, the batch order. The config is saved verbatim in every
JSON the lab writes, so a result file alone says how it was made. Each field carries its help
text in ``metadata["help"]`` (shown by ``headsurgeon lab presets``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from headsurgeon import flatconfig
from headsurgeon.errors import HeadsurgeonError
from headsurgeon.options import check_value

#: Position encodings and the transformers architecture that carries each (see architectures.py).
ENCODINGS = ("alibi", "rope", "nope", "learned")


def _f(default: Any, help: str) -> Any:  # noqa: A002 - "help" reads best here
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class LabConfig:
    """Everything that defines a lab. Defaults are the ``default`` preset."""

    # --- which runs -------------------------------------------------------------------------
    encodings: tuple[str, ...] = _f(ENCODINGS, "position encodings to train: alibi (BLOOM), rope (Llama), nope and learned (GPT-2)")
    seeds: tuple[int, ...] = _f((0, 1, 2), "one run per seed and encoding; the seed draws the init and the batch order")
    # --- data -------------------------------------------------------------------------------
    corpus: str = _f("python-docs", "training text (file, folder, .jsonl, python-docs, fortunes); held-out documents are split off it")
    other_corpus: str | None = _f("fortunes", "text of another kind for a second held-out perplexity; None to skip")
    heldout_fraction: float = _f(0.05, "fraction of documents held out (by a hash of their id, split seed 0)")
    vocab_size: int = _f(4096, "byte-level BPE vocabulary trained on the training documents (specials included)")
    tokenizer_documents: int | None = _f(None, "train the tokenizer on at most this many training documents (None: all)")
    seq_len: int = _f(128, "tokens per training sequence (position 0 is wherever a packed block starts)")
    # --- model ------------------------------------------------------------------------------
    layers: int = _f(4, "decoder layers")
    heads: int = _f(8, "attention heads per layer (ALiBi slopes 2^(-8(h+1)/H) for a power of two)")
    hidden: int = _f(128, "residual width (divisible by heads)")
    init_std: float = _f(0.02, "every weight matrix ~ N(0, init_std), biases 0, norm gains 1, for every architecture alike")
    # --- optimisation -----------------------------------------------------------------------
    steps: int = _f(300, "optimiser steps (the budget)")
    batch_size: int = _f(4, "sequences per step")
    lr: float = _f(2e-3, "peak learning rate (AdamW)")
    warmup_steps: int = _f(30, "linear warm-up steps, then cosine decay to min_lr_ratio * lr")
    min_lr_ratio: float = _f(0.1, "final learning rate as a fraction of the peak")
    weight_decay: float = _f(0.1, "AdamW weight decay on weight matrices (biases, norms unregularised)")
    beta2: float = _f(0.95, "AdamW beta2 (beta1 0.9)")
    clip_norm: float = _f(1.0, "gradient clip norm; 0 = off")
    # --- measurement ------------------------------------------------------------------------
    checkpoints: tuple[int, ...] = _f((0, 10, 25, 50, 100, 150, 200, 250, 300), "steps at which each model is diagnosed (0 = untrained); the last step is always added")
    diagnosis_sequences: int = _f(8, "held-out sequences (full seq_len) the diagnosis runs on")
    eval_sequences: int = _f(16, "sequences per perplexity measurement (held-out, other); training loss is logged instead of a train perplexity")
    eval_batch_size: int = _f(8, "batch size of diagnosis and perplexity passes")
    threads: int = _f(1, "torch CPU threads (1: on the shared 2-core CPU two threads were 2-4x slower per step)")

    def __post_init__(self) -> None:
        object.__setattr__(self, "encodings", tuple(self.encodings))
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        object.__setattr__(self, "checkpoints", tuple(sorted({int(s) for s in self.checkpoints})))
        bad = [e for e in self.encodings if e not in ENCODINGS]
        if bad or not self.encodings:
            raise HeadsurgeonError(f"unknown encoding(s) {bad or '(none given)'}; choose from {', '.join(ENCODINGS)}")
        if len(set(self.encodings)) != len(self.encodings) or len(set(self.seeds)) != len(self.seeds) or not self.seeds:
            raise HeadsurgeonError("encodings and seeds must be non-empty lists without repeats; write e.g. --encodings alibi,rope --seeds 0,1")
        for name in ("layers", "heads", "hidden", "steps", "batch_size", "diagnosis_sequences", "eval_sequences", "eval_batch_size", "threads"):
            if getattr(self, name) < 1:
                raise HeadsurgeonError(f"{name} must be at least 1, not {getattr(self, name)}; write e.g. --set {name}=1")
        if self.hidden % self.heads:
            raise HeadsurgeonError(f"hidden={self.hidden} is not divisible by heads={self.heads}; change one")
        if self.seq_len < 8:
            raise HeadsurgeonError(f"seq_len={self.seq_len} is too short for a diagnosis; use at least 8")
        if self.vocab_size < 260:
            raise HeadsurgeonError(f"vocab_size={self.vocab_size} is below the 256 byte symbols plus specials; use at least 260")
        if not 0 < self.heldout_fraction < 1:
            raise HeadsurgeonError(f"heldout_fraction must be in (0, 1), not {self.heldout_fraction}; write e.g. --set heldout_fraction=0.1")
        # the shared option rules (finite, ranges) and their one-line wording, as the toy config has them
        for name, rule in (("lr", {"above": 0}), ("min_lr_ratio", {"min": 0, "max": 1}), ("weight_decay", {"min": 0}),
                           ("beta2", {"above": 0, "below": 1}), ("clip_norm", {"min": 0})):
            check_value(name, getattr(self, name), flag=name, hint=f"fix --set {name}=...", **rule)
        if not 0 <= self.warmup_steps <= self.steps:
            raise HeadsurgeonError(f"warmup_steps must be in 0..steps ({self.steps}), not {self.warmup_steps}; lower --set warmup_steps")
        if any(s < 0 for s in self.checkpoints):
            raise HeadsurgeonError("checkpoint steps must be >= 0; fix --set checkpoints")

    @property
    def checkpoint_steps(self) -> tuple[int, ...]:
        """Diagnosed steps: the configured ones within the budget, plus 0 and the last step."""
        return tuple(sorted({0, self.steps, *(s for s in self.checkpoints if s <= self.steps)}))

    def training_dict(self) -> dict[str, Any]:
        """The fields that decide what a single run computes (which runs exist does not)."""
        d = self.to_dict()
        for k in ("encodings", "seeds", "threads"):
            d.pop(k)
        return d

    def replace(self, **changes: Any) -> LabConfig:
        return flatconfig.replace_fields(self, "lab", **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabConfig:
        return cls().replace(**data)


def field_names() -> list[str]:
    return flatconfig.field_names(LabConfig)


def field_help() -> dict[str, str]:
    return flatconfig.field_help(LabConfig)


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` -> a typed pair, by the field's declared type (lists are comma-separated)."""
    return flatconfig.parse_override(LabConfig, text, "lab", "steps=100")


#: ``default``: sized from steps measured in this lab's own loop on the shared 2-core CPU (one
#: thread; 8-10 other processes kept the load average at 14-18, so this job got about a
#: quarter of a core): at width 128, 4 layers, 8 heads, batch 4 x 256 tokens a BLOOM step took
#: 3.7 s and a checkpoint (diagnosis + 96 perplexity sequences) 42 s, i.e. ~4 h for 4 encodings
#: x 3 seeds x 500 steps. Halving the length to 128 tokens, 300 steps and 16+16 perplexity
#: sequences bring it to about an hour on one core shared with that load (see docs/lab.md for
#: the measured total). Step 0 is the untrained model.
#: ``tiny``: seconds, for the tests (a corpus file must be given: tests write one).
PRESETS: dict[str, tuple[str, LabConfig]] = {
    "default": (
        "4 encodings x 3 seeds; 4 layers, 8 heads, width 128, 128 tokens, batch 4, 300 steps, python-docs (~1 h on a shared core)",
        LabConfig(),
    ),
    "long": (
        "alibi and nope (GPT-2 blocks, no positions), seed 0; width 64, otherwise as default, 1000 steps, lr 3e-3: does collapse need more steps?",
        LabConfig(encodings=("alibi", "nope"), seeds=(0,), hidden=64, steps=1000, lr=3e-3, warmup_steps=50,
                  checkpoints=(0, 50, 100, 250, 500, 750, 1000)),
    ),
    "tiny": (
        "4 encodings x 2 seeds; 2 layers, 4 heads, width 32, 32 tokens, batch 4, 12 steps (seconds; for tests)",
        LabConfig(seeds=(0, 1), vocab_size=300, seq_len=32, layers=2, heads=4, hidden=32, steps=12, batch_size=4, lr=1e-2,
                  warmup_steps=2, checkpoints=(0, 6, 12), diagnosis_sequences=2, eval_sequences=4, eval_batch_size=4,
                  other_corpus=None, heldout_fraction=0.2),
    ),
}


def preset(name: str, **changes: Any) -> LabConfig:
    """The named preset with ``changes`` applied."""
    return flatconfig.pick_preset(PRESETS, name, "lab", **changes)
