"""Toy lab: Bigram-Backcopy, where attention sinks, value drains and residual peaks form.

Public API::

    from headsurgeon.toy import preset, train, compare_variants
    result = train(preset("tiny-1l"), out_dir="runs/toy/tiny")   # ToyRunResult
    print(result.summary["bos_attn_nontrigger"], result.timing["steps_per_s"])

Modules: ``task`` (bigram statistics, triggers, generation, rule check), ``model`` (the small
GPT with a recording attention path), ``dynamics`` (what is measured), ``train`` (the loop),
``compare_variants`` (softmax+AdamW vs ReLU vs SGD), ``figures`` and ``results`` (files).
"""

from headsurgeon.toy.compare import VARIANTS, compare_variants, variant_config
from headsurgeon.toy.config import PRESETS, ToyConfig, preset
from headsurgeon.toy.dynamics import DynamicsThresholds, measure, summarize
from headsurgeon.toy.model import ToyTransformer, Trace, relu_attention, softmax_attention
from headsurgeon.toy.results import ToyCompareResult, ToyRunResult, load_toy_run
from headsurgeon.toy.task import BigramBackcopy, RuleCheck, build_task, check_rule, load_text
from headsurgeon.toy.train import task_for, train

__all__ = [
    "PRESETS", "ToyConfig", "preset", "DynamicsThresholds", "measure", "summarize", "ToyTransformer",
    "Trace", "relu_attention", "softmax_attention", "ToyCompareResult", "ToyRunResult",
    "load_toy_run", "BigramBackcopy", "RuleCheck", "build_task", "check_rule", "load_text",
    "task_for", "train", "VARIANTS", "compare_variants", "variant_config",
]
