"""The lab's models: one transformers architecture per position encoding, as alike as the
library allows.

=========  ============  ===============================================================
encoding   architecture  how positions enter
=========  ============  ===============================================================
alibi      BLOOM         ``-m_h * distance`` added to the logits; slopes from transformers'
                         own ``build_alibi_tensor`` (BLOOM's forward calls it)
rope       Llama         rotary embedding of q and k (theta 10000)
learned    GPT-2         a trained position table ``wpe`` added to the token embedding
nope       GPT-2         the same ``wpe``, zeroed and frozen: no position information except
                         what the causal mask reveals
=========  ============  ===============================================================

Made equal on purpose: width, depth, heads (no grouped-query attention), vocabulary, tied
input/output embeddings, biases on every projection (Llama: ``attention_bias`` and
``mlp_bias``), the tanh-approximated GELU (Llama's ``hidden_act``), norm epsilon 1e-5, no
dropout, and one initialisation for all (:func:`initialise`: every matrix ~ N(0, std), biases
0, norm gains 1; GPT-2's scaled residual init is not used).

What still differs (transformers has no switch for it), see :func:`differences`:
BLOOM has a LayerNorm on the embeddings; Llama uses RMSNorm (no bias) and a gated MLP (three
matrices; its width is chosen so the MLP has BLOOM's parameter count); GPT-2 ``learned`` has a
position table of ``seq_len x hidden`` extra parameters. BLOOM computes attention eagerly (its
attention is not pluggable), the others train with SDPA and are diagnosed eagerly.
"""

from __future__ import annotations

import torch

from .config import LabConfig

ARCHITECTURE = {"alibi": "bloom", "rope": "llama", "learned": "gpt2", "nope": "gpt2"}


def llama_mlp_width(hidden: int) -> int:
    """Gated-MLP width whose parameters (3 matrices + biases) match BLOOM's 4x MLP (2 matrices)."""
    return round((8 * hidden * hidden + 4 * hidden) / (3 * hidden + 2))


def model_config(encoding: str, cfg: LabConfig, tokenizer):
    """The transformers config of ``encoding``'s model."""
    from transformers import BloomConfig, GPT2Config, LlamaConfig

    ids = dict(vocab_size=len(tokenizer), bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    if encoding == "alibi":
        return BloomConfig(n_layer=cfg.layers, n_head=cfg.heads, hidden_size=cfg.hidden, layer_norm_epsilon=1e-5,
                           hidden_dropout=0.0, attention_dropout=0.0, initializer_range=cfg.init_std, **ids)
    if encoding == "rope":
        return LlamaConfig(num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads, num_key_value_heads=cfg.heads,
                           hidden_size=cfg.hidden, intermediate_size=llama_mlp_width(cfg.hidden), hidden_act="gelu_pytorch_tanh",
                           max_position_embeddings=cfg.seq_len, rms_norm_eps=1e-5, attention_bias=True, mlp_bias=True,
                           attention_dropout=0.0, initializer_range=cfg.init_std, **ids)
    if encoding in ("learned", "nope"):
        return GPT2Config(n_layer=cfg.layers, n_head=cfg.heads, n_embd=cfg.hidden, n_inner=4 * cfg.hidden, n_positions=cfg.seq_len,
                          activation_function="gelu_new", layer_norm_epsilon=1e-5, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                          initializer_range=cfg.init_std, **ids)
    raise ValueError(f"unknown encoding {encoding!r}")


@torch.no_grad()
def initialise(model: torch.nn.Module, std: float) -> None:
    """One initialisation for every architecture, drawn from the current torch RNG in
    parameter order: matrices (and embeddings) ~ N(0, std), biases 0, norm gains 1."""
    for name, p in model.named_parameters():
        if p.ndim >= 2:
            p.normal_(0.0, std)
        elif name.endswith("bias"):
            p.zero_()
        else:  # the only other 1-D parameters are LayerNorm / RMSNorm gains
            p.fill_(1.0)


def build_model(encoding: str, cfg: LabConfig, tokenizer, *, seed: int, name: str):
    """A freshly initialised model of ``encoding`` (fp32, eager attention). The torch RNG of the
    caller is left alone: the init is drawn inside a forked RNG seeded with ``seed``."""
    from transformers import AutoModelForCausalLM

    config = model_config(encoding, cfg, tokenizer)
    config._name_or_path = name
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation="eager")
        initialise(model, cfg.init_std)
    if encoding == "nope":
        wpe = model.transformer.wpe.weight
        wpe.data.zero_()  # GPT-2 without positions: the table adds nothing ...
        wpe.requires_grad_(False)  # ... and is never trained (so the saved model stays NoPE)
    model.name_or_path = name
    return model


_EMBEDDING_NAMES = ("word_embeddings.weight", "embed_tokens.weight", "wte.weight", "wpe.weight")


def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    """Parameter counts (tied weights once): ``total``, ``trainable``, ``embeddings`` (token and
    position tables) and ``trainable_outside_embeddings`` (the blocks, norms and biases)."""
    params = dict(model.named_parameters())  # named_parameters already drops tied duplicates
    is_emb = {n: n.endswith(_EMBEDDING_NAMES) for n in params}
    return {
        "total": sum(p.numel() for p in params.values()),
        "trainable": sum(p.numel() for p in params.values() if p.requires_grad),
        "embeddings": sum(p.numel() for n, p in params.items() if is_emb[n]),
        "trainable_outside_embeddings": sum(p.numel() for n, p in params.items() if p.requires_grad and not is_emb[n]),
    }


def differences(cfg: LabConfig) -> list[str]:
    """What still differs between the architectures, as sentences for the report."""
    return [
        "alibi (BLOOM): LayerNorm on the token embeddings (word_embeddings_layernorm), which the others lack; attention runs eagerly in training too (BLOOM has no SDPA path in transformers)",
        f"rope (Llama): RMSNorm instead of LayerNorm (no norm bias); gated MLP (gate, up, down) of width {llama_mlp_width(cfg.hidden)} "
        f"instead of a 4x MLP of width {4 * cfg.hidden}, chosen to match its parameter count",
        f"learned (GPT-2): a trained position table of {cfg.seq_len} x {cfg.hidden} parameters",
        "nope (GPT-2): the same table, zeroed and frozen; otherwise GPT-2 and BLOOM have identical blocks (pre-LayerNorm, 4x GELU MLP, biases)",
    ]
