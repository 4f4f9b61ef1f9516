"""Each streamed reduction against a direct computation on tiny models of every family
(``tiny`` runs every case of ``conftest.FAMILY_CASES``, grouped-query layouts included)."""

import numpy as np
import pytest
import torch

from headsurgeon.extremes.measure import measure_prompts
from headsurgeon.extremes.probe import BatchProbe
from headsurgeon.prompts import Prompt
from headsurgeon.prompts.encoding import encode_prompts

# The test's own knowledge of each family's value layout (independent of the adapters):
# module computing the values, and how to cut head h's value from its full output.
VALUE_LAYOUT = {
    "llama": ("model.layers.{l}.self_attn.v_proj", lambda out, h, H, KV, d: out.view(*out.shape[:2], KV, d)[..., h // (H // KV), :]),
    "mistral": ("model.layers.{l}.self_attn.v_proj", lambda out, h, H, KV, d: out.view(*out.shape[:2], KV, d)[..., h // (H // KV), :]),
    "qwen2": ("model.layers.{l}.self_attn.v_proj", lambda out, h, H, KV, d: out.view(*out.shape[:2], KV, d)[..., h // (H // KV), :]),
    "bloom": ("transformer.h.{l}.self_attention.query_key_value", lambda out, h, H, KV, d: out.view(*out.shape[:2], H, 3, d)[..., h, 2, :]),
    "gpt_neox": ("gpt_neox.layers.{l}.attention.query_key_value", lambda out, h, H, KV, d: out.view(*out.shape[:2], H, 3 * d)[..., h, 2 * d :]),
    "gpt2": ("transformer.h.{l}.attn.c_attn", lambda out, h, H, KV, d: out[..., 2 * H * d + h * d : 2 * H * d + (h + 1) * d]),
    "phi3": ("model.layers.{l}.self_attn.qkv_proj",
             lambda out, h, H, KV, d: out[..., (H + KV) * d :].view(*out.shape[:2], KV, d)[..., h // (H // KV), :]),
    "mpt": ("transformer.blocks.{l}.attn.Wqkv", lambda out, h, H, KV, d: out[..., 2 * H * d + h * d : 2 * H * d + (h + 1) * d]),
}
for _t in ("qwen3", "gemma2", "gemma3_text", "olmo2", "gpt_oss"):
    VALUE_LAYOUT[_t] = VALUE_LAYOUT["llama"]


def _falcon_value(out, h, H, KV, d):
    if KV == 1:  # multi-query: [all Q | K | V]
        return out[..., (H + 1) * d : (H + 2) * d]
    if KV == H:  # ALiBi Falcon: interleaved per head like BLOOM
        return out.view(*out.shape[:2], H, 3, d)[..., h, 2, :]
    return out.view(*out.shape[:2], KV, H // KV + 2, d)[..., h // (H // KV), -1, :]  # per group [q..q k v]


VALUE_LAYOUT["falcon"] = ("transformer.h.{l}.self_attention.query_key_value", _falcon_value)


def full_weight_matmul(module, x):
    """The module's output recomputed from its whole weight (Linear: x W^T + b; Conv1D: x W + b)."""
    w, b = module.weight, module.bias
    y = x @ (w if type(module).__name__ == "Conv1D" else w.T)
    return y + b if b is not None else y


def run_probe(loaded, ids, lengths, **kw):
    model, family = loaded.model, loaded.adapter.config.model_type
    mask = (torch.arange(ids.shape[1])[None] < lengths[:, None]).long()
    probe = BatchProbe(loaded.adapter, lengths, values=True, residual=True, top_k=kw.get("top_k", 5))
    inputs = {}
    hooks = []
    path, _ = VALUE_LAYOUT[family]
    for l in range(2):
        mod = model.get_submodule(path.format(l=l))
        hooks.append(mod.register_forward_pre_hook(lambda m, a, l=l: inputs.__setitem__(l, a[0].detach())))
    with torch.no_grad(), probe.attach():
        model(input_ids=ids, attention_mask=mask, use_cache=False)
    for h in hooks:
        h.remove()
    with torch.no_grad(), loaded.adapter.reference_attention():  # the eager maps, as the reference
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True, output_attentions=True, use_cache=False)
    return loaded, probe, out, inputs


def test_value_norms_match_full_weight_matmul(tiny):
    torch.manual_seed(1)
    ids = torch.randint(0, 256, (2, 10))
    loaded, probe, _, inputs = run_probe(tiny, ids, torch.tensor([10, 7]))
    a = loaded.adapter
    path, cut = VALUE_LAYOUT[a.config.model_type]
    for l in range(2):
        full = full_weight_matmul(loaded.model.get_submodule(path.format(l=l)), inputs[l])
        for h in range(a.num_heads):
            direct = cut(full, h, a.num_heads, a.num_kv_heads, a.head_dim).norm(dim=-1)
            torch.testing.assert_close(probe.value_norm[:, l, h], direct, atol=1e-4, rtol=1e-4)


def test_residual_and_attention_match_model_outputs(tiny):
    torch.manual_seed(2)
    ids = torch.randint(0, 256, (2, 9))
    lengths = torch.tensor([9, 6])
    _, probe, out, _ = run_probe(tiny, ids, lengths, top_k=4)
    hs = out.hidden_states  # hidden_states[i] is the input of block i (the last one is after the final norm)
    for i in range(2):
        torch.testing.assert_close(probe.resid_norm[:, i], hs[i].norm(dim=-1), atol=1e-4, rtol=1e-4)
        vals, idx = hs[i].abs().topk(4, dim=-1)
        torch.testing.assert_close(probe.top_val[:, i].abs(), vals, atol=1e-5, rtol=1e-5)
        for b, n in enumerate(lengths.tolist()):
            assert probe.median_abs[b, i].item() == pytest.approx(hs[i][b, :n].abs().median().item(), rel=1e-5)
            torch.testing.assert_close(probe.dim_abs_sum[b, i], hs[i][b, :n].abs().sum(0), atol=1e-4, rtol=1e-4)
    for l in range(2):
        A = out.attentions[l]
        for b, n in enumerate(lengths.tolist()):
            direct = A[b, :, 1:n, :].sum(1)  # real queries t >= 1
            torch.testing.assert_close(probe.received[b, l, :, :n], direct[:, :n], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", ["llama-gqa", "bloom"])
def test_batching_does_not_change_per_prompt_results(case, tiny_factory):
    loaded = tiny_factory(case)
    tok = loaded.tokenizer
    prompts = [Prompt("a", "d", "short text here"), Prompt("b", "d", "a somewhat longer piece of text, with a comma.")]
    enc = encode_prompts(tok, prompts)
    together, loss_t = measure_prompts(loaded, enc, values=True, residual=True, top_k=3, batch_size=2, progress=False)
    alone, loss_a = measure_prompts(loaded, enc, values=True, residual=True, top_k=3, batch_size=1, progress=False)
    for x, y in zip(together + [None], alone + [None]):
        if x is None:
            continue
        for name in ("received", "value_norm", "resid_norm", "median_abs"):
            np.testing.assert_allclose(getattr(x, name), getattr(y, name), atol=1e-4, rtol=1e-4)
    for x, y in zip(loss_t, loss_a):
        np.testing.assert_allclose(x, y, atol=1e-4)
    # token losses are next-token cross-entropies at every real position but the last
    assert [len(l) for l in loss_t] == [e.length - 1 for e in enc]
