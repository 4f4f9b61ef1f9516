"""The data every arm of one seed sees, built exactly as :func:`headsurgeon.surgery.operate`
builds it (same corpus spec, split seed, evaluation subsets and diagnosis prompts).

The stock reference and the LoRA arm run outside ``operate``; they must still measure on the
very same sequences, or a paired comparison would compare different texts. A test checks that
the stock perplexities computed here equal the ``stock`` row ``operate`` records.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from headsurgeon.corpus import CorpusSpec, PackedCorpus, build_corpus, build_eval_set, spread_rows
from headsurgeon.models import LoadedModel
from headsurgeon.prompts import builtin_prompts
from headsurgeon.prompts.encoding import EncodedPrompt, encode_prompts
from headsurgeon.surgery import SurgeryConfig


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


def run_data(loaded: LoadedModel, cfg: SurgeryConfig, *, progress: bool = False) -> RunData:
    tok = loaded.tokenizer
    corpus = build_corpus(
        tok, CorpusSpec(source=cfg.corpus, heldout_fraction=cfg.heldout_fraction, max_tokens=cfg.max_train_tokens),
        seq_len=cfg.seq_len, seed=cfg.seed, progress=progress,
    )
    other = None
    if cfg.other_corpus:
        other = build_eval_set(tok, CorpusSpec(source=cfg.other_corpus), seq_len=cfg.seq_len, max_sequences=cfg.eval_sequences,
                               progress=progress)
    n = cfg.eval_sequences
    eval_sets = {"train": spread_rows(corpus.train, n), "heldout": spread_rows(corpus.heldout, n),
                 "other": None if other is None else other.sequences}
    prompts = diagnosis_prompts(loaded) if cfg.diagnose_every_eval else None
    info = None if other is None else {"source": cfg.other_corpus, "sequences": len(other.sequences)}
    return RunData(corpus=corpus, eval_sets=eval_sets, prompts=prompts, other_info=info)
