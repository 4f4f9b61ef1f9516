"""Tiny random models of every supported family, built offline in well under a second.

Used by the tests (marker-value and equivalence checks), by the tiny study preset and by
anyone who wants to try a command without a real model. Each comes with a byte-level
tokenizer built from the ``tokenizers`` library (256 byte symbols + ``<bos>``, ``<eos>``,
``<pad>``), so every piece of text is encodable and nothing is downloaded.
"""

from __future__ import annotations

import torch
from transformers import (
    AutoModelForCausalLM,
    BloomConfig,
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    MistralConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

TINY_FAMILIES = ("bloom", "llama", "mistral", "qwen2", "gpt2", "gpt_neox")

_SPECIALS = ["<bos>", "<eos>", "<pad>"]


def byte_tokenizer(add_bos: bool = False) -> PreTrainedTokenizerFast:
    """A lossless byte-level tokenizer (vocab 259). ``add_bos`` mimics Llama-style tokenizers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {tok: i for i, tok in enumerate(sorted(alphabet))}
    for s in _SPECIALS:
        vocab[s] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    if add_bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", vocab["<bos>"])]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )


def tiny_config(family: str, *, layers: int = 2, heads: int = 4, kv_heads: int = 2, hidden: int = 32):
    """Config for a tiny model of ``family`` (GQA with ``kv_heads`` where the family has it)."""
    vocab = 256 + len(_SPECIALS)
    common = dict(vocab_size=vocab, bos_token_id=256, eos_token_id=257, pad_token_id=258)
    if family == "bloom":
        return BloomConfig(n_layer=layers, n_head=heads, hidden_size=hidden, **common)
    if family in ("llama", "mistral", "qwen2"):
        cls = {"llama": LlamaConfig, "mistral": MistralConfig, "qwen2": Qwen2Config}[family]
        extra = {"attention_bias": True} if family == "llama" else {}
        return cls(
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=kv_heads,
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            max_position_embeddings=512,
            tie_word_embeddings=False,
            **extra,
            **common,
        )
    if family == "gpt2":
        return GPT2Config(n_layer=layers, n_head=heads, n_embd=hidden, n_positions=512, **common)
    if family == "gpt_neox":
        return GPTNeoXConfig(
            num_hidden_layers=layers,
            num_attention_heads=heads,
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            max_position_embeddings=512,
            attention_bias=True,
            **common,
        )
    raise ValueError(f"unknown tiny family {family!r}; choose from {', '.join(TINY_FAMILIES)}")


def tiny_model(family: str, *, seed: int = 0, **config_overrides):
    """A seeded tiny causal LM of ``family`` in fp32 eval mode, with weights scaled up so that
    attention patterns are far from uniform (random init at std 0.02 gives near-uniform maps,
    which would make equivalence tests trivially pass)."""
    config = tiny_config(family, **config_overrides)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                p.normal_(0.0, 0.5 if "emb" in name or "wte" in name or "wpe" in name else 0.3)
            elif "bias" in name:
                p.normal_(0.0, 0.1)
    model.name_or_path = f"tiny-{family}"
    model.config._name_or_path = f"tiny-{family}"
    return model.eval()


def tiny_model_and_tokenizer(family: str, *, seed: int = 0, **config_overrides):
    """A tiny model and a matching byte tokenizer (Llama-family tokenizers add ``<bos>``)."""
    return tiny_model(family, seed=seed, **config_overrides), byte_tokenizer(add_bos=family in ("llama", "mistral"))
