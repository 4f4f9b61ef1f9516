"""The lab: small causal LMs trained from scratch that differ only in their position encoding
(ALiBi / BLOOM, RoPE / Llama, NoPE and learned / GPT-2), diagnosed with headsurgeon's own
diagnosis at checkpoints, to test whether ALiBi makes heads collapse onto position 0.

Public API::

    from headsurgeon.lab import preset, run_lab
    analysis = run_lab(preset("default"), "runs/lab/default")   # LabAnalysis (lab.json + figures)
    analysis.encodings["alibi"]["end"]["pooled"]["rho_all_heads"]

Modules: ``config`` (LabConfig, presets), ``tokenizer`` (the lab's BPE), ``data`` (shared
sequences), ``architectures`` (one transformers model per encoding), ``train`` (one run,
resumable), ``state`` (training state without pickle), ``probe`` (checkpoint diagnosis and
perplexity), ``results`` (run.json), ``analysis`` (lab.json), ``figures``, ``report`` (text).
See ``docs/lab.md``.
"""

from .analysis import LabAnalysis, analyse_lab
from .architectures import ARCHITECTURE, build_model
from .config import ENCODINGS, PRESETS, LabConfig, parse_override, preset
from .run import run_lab
from .train import train_run

__all__ = ["ARCHITECTURE", "ENCODINGS", "PRESETS", "LabAnalysis", "LabConfig", "analyse_lab", "build_model",
           "parse_override", "preset", "run_lab", "train_run"]
