"""Side-by-side generations: the same prompts, the same seeds, several checkpoints.

A perplexity number says little about whether a repaired model still writes sensibly; reading
completions side by side does (the paper's "generation check": temperature 0.7, top-p 0.92,
100 new tokens). Each checkpoint is loaded with plain ``transformers`` from its
``save_pretrained`` folder (no headsurgeon code in the forward pass) and sampled with
``model.generate``. All prompts of a checkpoint go through one batched (left-padded) call,
because on a CPU the per-step overhead of a small model, not its arithmetic, sets the time:
five prompts cost little more than one. The RNG is seeded with ``seed`` before each
checkpoint's call, so every checkpoint draws from the same random stream for the same batch and
differences come from the weights alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.models import load_model
from headsurgeon.options import check_fields, option

#: Short openings across the diagnosis domains (prose, code, technical, narrative, explanation).
DEFAULT_GENERATION_PROMPTS = (
    "The history of the printing press begins",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "To install the package on a fresh machine, first",
    "Once upon a time, in a small village by the sea,",
    "The main difference between a list and a tuple in Python is",
)


@dataclass(frozen=True)
class GenerationSettings:
    seed: int = option(0, "sampling seed (the same for every checkpoint)", integer=True, min=0)
    temperature: float = option(0.7, "sampling temperature", above=0)
    top_p: float = option(0.92, "nucleus sampling threshold", above=0, max=1)
    max_new_tokens: int = option(100, "new tokens per generation", integer=True, min=1)

    def __post_init__(self):
        check_fields(self)


@dataclass
class Generations:
    """``texts[label][i]`` is the completion (new tokens only) of ``prompts[i]`` by checkpoint ``label``."""

    prompts: list[str]
    sources: dict[str, str]
    texts: dict[str, list[str]]
    new_tokens: dict[str, list[int]]
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"prompts": self.prompts, "sources": self.sources, "texts": self.texts, "new_tokens": self.new_tokens,
                "settings": asdict(self.settings), "seconds": self.seconds}

    @classmethod
    def from_dict(cls, doc: dict) -> Generations:
        return cls(prompts=doc["prompts"], sources=doc["sources"], texts=doc["texts"], new_tokens=doc["new_tokens"],
                   settings=GenerationSettings(**doc["settings"]), seconds=doc.get("seconds", 0.0))


@torch.no_grad()
def generate_side_by_side(
    checkpoints: dict[str, str | Path],
    prompts: list[str] | None = None,
    *,
    settings: GenerationSettings | None = None,
    progress: bool = True,
    dtype: str = "fp32",
    device: str = "cpu",
    placement=None,
) -> Generations:
    """Sample a completion of every prompt from every checkpoint (``label -> model folder``),
    each loaded by :func:`headsurgeon.load_model` with ``dtype``, ``device`` and ``placement``."""
    import time

    from tqdm.auto import tqdm

    settings = settings or GenerationSettings()
    prompts = list(prompts or DEFAULT_GENERATION_PROMPTS)
    if not prompts or not checkpoints:
        raise HeadsurgeonError("generation needs at least one prompt and one checkpoint")
    texts: dict[str, list[str]] = {}
    counts: dict[str, list[int]] = {}
    start = time.perf_counter()
    bar = tqdm(total=len(prompts) * len(checkpoints), desc="generating", unit="text", disable=not progress, leave=False)
    for label, folder in checkpoints.items():
        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise HeadsurgeonError(f"{folder} is not a save_pretrained model folder (no config.json); pass a checkpoint folder")
        loaded = load_model(str(folder), progress=progress, dtype=dtype, device=device, placement=placement)
        model, tok = loaded.model, loaded.tokenizer
        eos = tok.eos_token_id
        pad = tok.pad_token_id if tok.pad_token_id is not None else eos
        tok.padding_side = "left"  # decoder-only: new tokens must follow every prompt directly
        enc = tok(prompts, return_tensors="pt", padding=True).to(loaded.device)
        torch.manual_seed(settings.seed)
        out = model.generate(**enc, do_sample=True, temperature=settings.temperature, top_p=settings.top_p,
                             max_new_tokens=settings.max_new_tokens, pad_token_id=pad)
        new = out[:, enc["input_ids"].shape[1]:]
        texts[label], counts[label] = [], []
        for row in new:
            # rows that stopped early are filled with padding after their end-of-sequence token
            ends = (row == eos).nonzero() if eos is not None else []
            n = int(ends[0]) + 1 if len(ends) else int(row.numel())
            texts[label].append(tok.decode(row[:n], skip_special_tokens=True))
            counts[label].append(n)
        bar.update(len(prompts))
        del model
    bar.close()
    return Generations(prompts=prompts, sources={k: str(v) for k, v in checkpoints.items()}, texts=texts, new_tokens=counts,
                       settings=settings, seconds=time.perf_counter() - start)
