"""The data of one training run: corpus, evaluation subsets and diagnosis prompts.

Built in one place so that every arm of a study (surgery, LoRA, the stock reference) and the
report's ablation measure on the very same sequences as ``operate``: a paired comparison of
different texts would compare nothing. A test checks that the stock perplexities a study
computes from here equal the ``stock`` row ``operate`` records.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from headsurgeon.corpus import CorpusSpec, PackedCorpus, build_corpus, build_eval_set, spread_rows
from headsurgeon.models import LoadedModel
from headsurgeon.prompts import builtin_prompts
from headsurgeon.prompts.encoding import EncodedPrompt, encode_prompts

from .config import SurgeryConfig


@dataclass
class RunData:
    corpus: PackedCorpus
    eval_sets: dict[str, torch.Tensor | None]  # train / heldout / other, as operate evaluates them
    prompts: list[EncodedPrompt] | None  # diagnosis prompts (None when diagnosis is off)
    other_info: dict | None


def diagnosis_prompts(loaded: LoadedModel) -> list[EncodedPrompt]:
    """The built-in prompts, encoded as ``operate`` encodes them for its re-diagnoses."""
    prompt_len = min(512, loaded.adapter.max_positions or 512)
    return encode_prompts(loaded.tokenizer, builtin_prompts(), bos="auto", max_length=prompt_len)


def training_corpus(tokenizer, cfg: SurgeryConfig | dict, *, progress: bool = False) -> PackedCorpus:
    """The run's packed corpus and held-out split (deterministic in the configuration)."""
    c = cfg if isinstance(cfg, dict) else cfg.to_dict()
    spec = CorpusSpec(source=c["corpus"], heldout_fraction=c["heldout_fraction"], max_tokens=c.get("max_train_tokens"))
    return build_corpus(tokenizer, spec, seq_len=c["seq_len"], seed=c["seed"], progress=progress)


def run_data(loaded: LoadedModel, cfg: SurgeryConfig, *, progress: bool = False) -> RunData:
    tok = loaded.tokenizer
    corpus = training_corpus(tok, cfg, progress=progress)
    other = None
    if cfg.other_corpus:
        other = build_eval_set(tok, CorpusSpec(source=cfg.other_corpus), seq_len=cfg.seq_len, max_sequences=cfg.eval_sequences,
                               progress=progress)
    n = cfg.eval_sequences
    # Evenly spaced rows: packed rows follow file order, so the first n would be one document's text.
    eval_sets = {"train": spread_rows(corpus.train, n), "heldout": spread_rows(corpus.heldout, n),
                 "other": None if other is None else other.sequences}
    prompts = diagnosis_prompts(loaded) if cfg.diagnose_every_eval else None
    info = None if other is None else {"source": cfg.other_corpus, "sequences": len(other.sequences)}
    return RunData(corpus=corpus, eval_sets=eval_sets, prompts=prompts, other_info=info)
