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
    FalconConfig,
    Gemma2Config,
    Gemma3TextConfig,
    GPT2Config,
    GPTNeoXConfig,
    GptOssConfig,
    LlamaConfig,
    MistralConfig,
    MptConfig,
    Olmo2Config,
    Phi3Config,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen3Config,
)

TINY_FAMILIES = (
    "bloom", "llama", "mistral", "qwen2", "gpt2", "gpt_neox",
    "qwen3", "gemma2", "gemma3", "olmo2", "phi3", "gpt_oss", "falcon", "mpt",
)
#: Families whose tokenizer adds ``<bos>`` in front of every text, as their real tokenizers do.
_ADDS_BOS = ("llama", "mistral", "gemma2", "gemma3", "phi3")

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


def tiny_config(family: str, *, layers: int = 2, heads: int = 4, kv_heads: int = 2, hidden: int = 32, **extra):
    """Config for a tiny model of ``family`` (GQA with ``kv_heads`` where the family has it).

    ``extra`` goes to the config class as is (e.g. ``sliding_window=8``, Falcon's ``alibi=True``).
    The newer families get small sliding windows (8 tokens) on alternating layers, so prompts
    longer than the window are the normal case in tests.
    """
    vocab = 256 + len(_SPECIALS)
    common = dict(vocab_size=vocab, bos_token_id=256, eos_token_id=257, pad_token_id=258)
    grouped = dict(num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                   hidden_size=hidden, intermediate_size=2 * hidden, max_position_embeddings=512,
                   tie_word_embeddings=False, **common)
    alternating = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(layers)]
    head_dim = hidden // heads
    if family == "qwen3":
        return Qwen3Config(head_dim=head_dim, **{**grouped, **extra})
    if family == "gemma2":
        return Gemma2Config(head_dim=head_dim, query_pre_attn_scalar=head_dim, sliding_window=8, layer_types=alternating,
                            attn_logit_softcapping=5.0, final_logit_softcapping=30.0, **{**grouped, **extra})
    if family == "gemma3":
        return Gemma3TextConfig(head_dim=head_dim, query_pre_attn_scalar=head_dim, sliding_window=8,
                                layer_types=alternating, **{**grouped, **extra})
    if family == "olmo2":
        return Olmo2Config(**{**grouped, **extra})
    if family == "phi3":
        return Phi3Config(**{**grouped, **extra})
    if family == "gpt_oss":
        return GptOssConfig(head_dim=head_dim, sliding_window=8, layer_types=alternating, num_local_experts=4,
                            num_experts_per_tok=2, attention_bias=True,
                            rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, **{**grouped, **extra})
    if family == "falcon":
        opts = dict(new_decoder_architecture=True, num_kv_heads=kv_heads, multi_query=False, alibi=False, bias=False)
        opts.update(extra)
        if opts.get("alibi"):
            opts.update(new_decoder_architecture=False, multi_query=False, parallel_attn=False, num_kv_heads=heads)
        return FalconConfig(num_hidden_layers=layers, num_attention_heads=heads, hidden_size=hidden,
                            max_position_embeddings=512, tie_word_embeddings=False, **common, **opts)
    if family == "mpt":
        return MptConfig(n_layers=layers, n_heads=heads, d_model=hidden, expansion_ratio=2, max_seq_len=512,
                         tie_word_embeddings=False, **common, **extra)
    if family == "bloom":
        return BloomConfig(n_layer=layers, n_head=heads, hidden_size=hidden, **common)
    if family in ("llama", "mistral", "qwen2"):
        cls = {"llama": LlamaConfig, "mistral": MistralConfig, "qwen2": Qwen2Config}[family]
        bias = {"attention_bias": True} if family == "llama" else {}
        return cls(
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=kv_heads,
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            max_position_embeddings=512,
            tie_word_embeddings=False,
            **{**bias, **extra},
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
            if name.endswith(".sinks"):
                p.normal_(0.0, 1.0)  # learned sink logits (gpt-oss): a visible share per head
            elif p.ndim >= 2:
                p.normal_(0.0, 0.5 if "emb" in name or "wte" in name or "wpe" in name else 0.3)
            elif "bias" in name:
                p.normal_(0.0, 0.1)
    model.name_or_path = f"tiny-{family}"
    model.config._name_or_path = f"tiny-{family}"
    return model.eval()


def tiny_model_and_tokenizer(family: str, *, seed: int = 0, **config_overrides):
    """A tiny model and a matching byte tokenizer (Llama-family tokenizers add ``<bos>``)."""
    return tiny_model(family, seed=seed, **config_overrides), byte_tokenizer(add_bos=family in _ADDS_BOS)
