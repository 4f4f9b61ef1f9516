"""What a report computes, and how it loads the models it runs (``ReportOptions``).

Its own module, light to import: the CLI makes ``report``'s options from these fields
(:mod:`headsurgeon.cli.config_options`) on every call, without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from headsurgeon.options import check_fields, option


@dataclass(frozen=True)
class ReportOptions:
    """What to compute. The three model-loading pieces can be skipped for a fast report."""

    generations: bool = True
    dormancy: bool = True
    ablation: bool = True
    stock_model: str | None = None  # stock model folder / spec (default: the run manifest's model source)
    generation_prompts: tuple[str, ...] | None = None  # default: evaluation.generation.DEFAULT_GENERATION_PROMPTS
    seed: int = option(0, "sampling seed (the same for every checkpoint)", integer=True, min=0)
    temperature: float = option(0.7, "sampling temperature", above=0)
    top_p: float = option(0.92, "nucleus sampling threshold", above=0, max=1)
    max_new_tokens: int = option(100, "new tokens per generation", integer=True, min=1)
    ablation_sequences: int = option(4, "held-out sequences per ablation pass", integer=True, min=1)
    ablation_per_group: int = option(6, "heads ablated one at a time per group", integer=True, min=1, flag="--ablation-heads")
    dormancy_threshold: float = option(0.01, "an MLP neuron is dormant when ||up|| x ||down|| is below this", above=0)
    drift_threshold: float = option(0.05, "a head drifts when |delta BOS mass| is above this", above=0, below=1)
    reuse: bool = True  # reuse pieces cached in RUN/evaluation/ when their settings match
    study: str | None = None  # a `headsurgeon study` folder (or its study.json) to add as a section
    dtype: str = "fp32"  # fp32 | bf16 | fp16 for the model-loading pieces
    device: str = "cpu"  # cpu | cuda[:N] | mps | auto, for the model-loading pieces
    device_map: str | None = None  # spread each model with accelerate ("auto", "cpu", "cuda:0"); None: all on `device`
    max_memory: dict | None = None  # with device_map: per-device caps in bytes ({0: ..., "cpu": ...})
    offload_folder: str | None = None  # with device_map: where weights offloaded to disk go

    def __post_init__(self):
        check_fields(self)  # before any model is loaded
