"""The lab's tokenizer: a byte-level BPE trained (with the ``tokenizers`` library) on the
training documents of the lab's corpus, shared by every run of the lab.

Why train one: a borrowed 49k-token vocabulary (SmolLM2's) would put most of a small model's
parameters and compute in the embedding and the softmax; a 4k BPE keeps the CPU budget in the
transformer blocks, where the heads are. Byte-level, so every text is encodable.

Held-out documents are kept out of tokenizer training by the corpus split's own rule
(:func:`headsurgeon.corpus.split.unit_hash` with split seed 0 below ``heldout_fraction``); the
rare fallback that split applies when the held-out side would not fill one sequence is not
mirrored here (it only moves documents *into* the held-out side).

Special tokens: ``<eos>`` (between documents; also the BOS id in the model configs, GPT-2
style) and ``<pad>``. No BOS is ever prepended: as in BLOOM and GPT-2 training, position 0 of a
packed block is wherever the block starts.
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path

from headsurgeon.corpus import load_documents
from headsurgeon.corpus.split import unit_hash

SPECIALS = ("<eos>", "<pad>")
SPLIT_SEED = 0


def train_tokenizer(corpus: str, *, vocab_size: int, heldout_fraction: float, max_documents: int | None = None):
    """A ``PreTrainedTokenizerFast`` trained on the training side of ``corpus``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    docs = (d for d in load_documents(corpus) if unit_hash(SPLIT_SEED, d.id) >= heldout_fraction)
    texts = (d.text for d in islice(docs, max_documents))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIALS), initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>", model_max_length=10**9)


def load_or_train_tokenizer(folder: Path, corpus: str, *, vocab_size: int, heldout_fraction: float, max_documents: int | None = None):
    """The tokenizer saved in ``folder``, or a newly trained one saved there (resumable labs
    reuse it, so every run of a lab, before and after an interruption, shares one vocabulary)."""
    from transformers import AutoTokenizer

    if (folder / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(str(folder))
    tok = train_tokenizer(corpus, vocab_size=vocab_size, heldout_fraction=heldout_fraction, max_documents=max_documents)
    tmp = folder.with_name(folder.name + ".tmp")
    tok.save_pretrained(str(tmp))
    tmp.replace(folder)
    return AutoTokenizer.from_pretrained(str(folder))
