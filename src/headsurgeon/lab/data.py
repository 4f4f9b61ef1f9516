"""The data every run of a lab shares: tokenizer, packed train / held-out sequences, the
sequences the diagnosis reads and the perplexity sets.

Built once per lab through :mod:`headsurgeon.corpus` (tokenised corpora are cached there), so
all encodings see the same token ids; ``info`` carries the corpus hashes that prove it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from headsurgeon.corpus import CorpusSpec, build_corpus, build_eval_set, spread_rows
from headsurgeon.corpus.tokenize import tokenizer_fingerprint
from headsurgeon.prompts import Prompt
from headsurgeon.prompts.encoding import EncodedPrompt

from .config import LabConfig
from .tokenizer import SPLIT_SEED, load_or_train_tokenizer


@dataclass
class LabData:
    tokenizer: object
    train: torch.Tensor  # [N, seq_len]
    eval_sets: dict[str, torch.Tensor]  # name -> [K, seq_len] perplexity sequences
    diagnosis_prompts: list[EncodedPrompt]
    info: dict = field(default_factory=dict)


def diagnosis_prompts(tokenizer, sequences: torch.Tensor) -> list[EncodedPrompt]:
    """Held-out blocks as prompts for :func:`headsurgeon.diagnosis.diagnose_encoded`: the model
    is diagnosed on text of its training distribution, at its full training length."""
    return [
        EncodedPrompt(Prompt(f"heldout-{i}", "heldout", tokenizer.decode(row.tolist())), row.tolist())
        for i, row in enumerate(sequences)
    ]


def build_lab_data(cfg: LabConfig, out_dir: Path, *, progress: bool = False) -> LabData:
    tokenizer = load_or_train_tokenizer(out_dir / "tokenizer", cfg.corpus, vocab_size=cfg.vocab_size,
                                        heldout_fraction=cfg.heldout_fraction, max_documents=cfg.tokenizer_documents)
    corpus = build_corpus(tokenizer, CorpusSpec(source=cfg.corpus, heldout_fraction=cfg.heldout_fraction),
                          seq_len=cfg.seq_len, seed=SPLIT_SEED, progress=progress)
    heldout = corpus.heldout
    diag_rows = spread_rows(heldout, cfg.diagnosis_sequences)
    eval_sets = {"heldout": spread_rows(heldout, cfg.eval_sequences)}
    info = {"corpus": corpus.info, "tokenizer_sha256": tokenizer_fingerprint(tokenizer), "vocab_size": len(tokenizer)}
    if cfg.other_corpus:
        other = build_eval_set(tokenizer, CorpusSpec(source=cfg.other_corpus), seq_len=cfg.seq_len,
                               max_sequences=cfg.eval_sequences, progress=progress)
        eval_sets["other"] = other.sequences
        info["other_corpus"] = other.info
    info["eval_sequences"] = {k: int(v.shape[0]) for k, v in eval_sets.items()}
    info["diagnosis_sequences"] = int(diag_rows.shape[0])
    return LabData(tokenizer, corpus.train, eval_sets, diagnosis_prompts(tokenizer, diag_rows), info)
