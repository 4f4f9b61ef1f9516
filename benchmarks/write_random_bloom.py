"""Write a randomly initialised model with BLOOM-7b1's configuration as sharded safetensors.

Block by block: the model is built on the meta device (no memory), and each shard's tensors
are drawn, written and dropped before the next, so the writer never holds more than the
largest shard (the 250,880 x 4096 token embedding, 2 GB in bf16). One shard per block plus
one for the stem, an index in save_pretrained's format, the config and a byte-level tokenizer
(the real BLOOM tokenizer is not needed to measure memory and time, and is not on this machine).

Weights are N(0, 0.02) like BLOOM's initialiser, LayerNorm weights 1 and biases 0; the
diagnosis of such a model says nothing about BLOOM, only about what streaming it costs.

    nice -n 10 .venv/bin/python benchmarks/write_random_bloom.py /tmp/bloom-7b1-random
    nice -n 10 .venv/bin/python benchmarks/write_random_bloom.py /tmp/tiny-bloom --layers 2 --hidden 64 --heads 4
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from accelerate import init_empty_weights
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, BloomConfig

from headsurgeon.models.tiny import byte_tokenizer

#: bigscience/bloom-7b1's config.json (the fields that shape the weights).
BLOOM_7B1 = dict(vocab_size=250880, hidden_size=4096, n_layer=30, n_head=32, layer_norm_epsilon=1e-5,
                 apply_residual_connection_post_layernorm=False, bos_token_id=1, eos_token_id=2, pad_token_id=3)


def random_tensor(name: str, shape, dtype: torch.dtype, gen: torch.Generator) -> torch.Tensor:
    if "layernorm" in name or name.endswith(("ln_f.weight", "ln_f.bias")):
        return (torch.ones if name.endswith("weight") else torch.zeros)(shape, dtype=dtype)
    if name.endswith("bias"):
        return torch.zeros(shape, dtype=dtype)
    return torch.empty(shape, dtype=dtype).normal_(0.0, 0.02, generator=gen)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--layers", type=int, default=BLOOM_7B1["n_layer"])
    ap.add_argument("--hidden", type=int, default=BLOOM_7B1["hidden_size"])
    ap.add_argument("--heads", type=int, default=BLOOM_7B1["n_head"])
    ap.add_argument("--vocab", type=int, default=BLOOM_7B1["vocab_size"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    config = BloomConfig(**{**BLOOM_7B1, "n_layer": args.layers, "hidden_size": args.hidden, "n_head": args.heads, "vocab_size": args.vocab})
    config.architectures = ["BloomForCausalLM"]
    config._name_or_path = args.out.name
    dtype = torch.bfloat16
    with init_empty_weights():
        skeleton = AutoModelForCausalLM.from_config(config, dtype=dtype)
    shapes = {n: p.shape for n, p in skeleton.named_parameters()}
    if config.tie_word_embeddings:  # lm_head is the embedding matrix: stored once, as save_pretrained does
        shapes.pop("lm_head.weight", None)
    groups: list[list[str]] = [[n for n in shapes if not n.startswith("transformer.h.")]]
    groups += [[n for n in shapes if n.startswith(f"transformer.h.{l}.")] for l in range(args.layers)]
    args.out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(args.seed)
    weight_map, total = {}, 0
    start = time.perf_counter()
    for i, names in enumerate(groups):
        fname = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        tensors = {n: random_tensor(n, shapes[n], dtype, gen) for n in names}
        save_file(tensors, str(args.out / fname), metadata={"format": "pt"})
        total += sum(t.numel() * t.element_size() for t in tensors.values())
        weight_map.update({n: fname for n in names})
        del tensors
        print(f"{fname}: {len(names)} tensors, {total / 1e9:.2f} GB so far, {time.perf_counter() - start:.0f} s", flush=True)
    (args.out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))
    config.dtype = "bfloat16"
    config.save_pretrained(args.out)
    tok = byte_tokenizer()
    tok.save_pretrained(args.out)
    print(f"wrote {args.out}: {total / 1e9:.2f} GB in {len(groups)} shards, {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
