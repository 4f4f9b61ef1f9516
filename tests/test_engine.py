"""The measurement engine: exact row statistics without maps, the model's output unchanged, and
loud failures where a backend cannot be measured (see also ``test_capture.py`` for the
per-family equality with transformers' eager maps)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from headsurgeon.capture import ENGINE, chunked_row_stats, engine as engine_module, fused_row_stats, measure_attention, rows_from_maps
from headsurgeon.capture.checks import check_row_stats
from headsurgeon.capture.rowstats import RowStats, repeat_kv
from headsurgeon.diagnosis import collect_head_stats
from headsurgeon.errors import CaptureError
from headsurgeon.prompts import Prompt
from headsurgeon.prompts.encoding import encode_prompts


def random_qkv(B=2, H=6, KV=2, T=13, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, T, d, generator=g) * 2
    k = torch.randn(B, KV, T, d, generator=g) * 2
    v = torch.randn(B, KV, T, d + 2, generator=g)  # a value head size unlike the key's
    return q, k, v


def explicit_maps(q, k, scale, keep):
    s = scale * q @ repeat_kv(k, q.shape[1]).transpose(-1, -2)
    return torch.softmax(s.masked_fill(~keep, float("-inf")), -1)


def masks(B, T):
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    padded = causal.expand(B, 1, T, T).clone()
    padded[1, ..., 9:] = False  # second sequence is 9 tokens long (right padding)
    window = causal & ~torch.ones(T, T, dtype=torch.bool).tril(-4)  # sliding window of 4
    return {"causal": (None, causal.expand(B, 1, T, T)), "padded": (padded, padded), "window": (window.expand(B, 1, T, T), window.expand(B, 1, T, T))}


def assert_rows_close(got: RowStats, want: RowStats, rows_ok: torch.Tensor, atol=1e-5):
    for name in ("bos", "entropy", "local"):
        a, b = getattr(got, name), getattr(want, name)
        torch.testing.assert_close(a[rows_ok], b[rows_ok], atol=atol, rtol=0, msg=name)


@pytest.mark.parametrize("kind", ["causal", "padded", "window"])
def test_fused_and_chunked_rows_equal_the_maps(kind):
    q, k, v = random_qkv()
    B, H, T, d = q.shape
    scale = d**-0.5
    mask, keep = masks(B, T)[kind]
    ref = rows_from_maps(explicit_maps(q, k, scale, keep))
    rows_ok = keep.any(-1).expand(B, H, T) & (torch.arange(T) < torch.tensor([T, 9])[:, None])[:, None, :]
    out, fused = fused_row_stats(q, k, v, scale=scale, mask=mask)
    assert_rows_close(fused, ref, rows_ok)
    expected_out = explicit_maps(q, k, scale, keep) @ repeat_kv(v, H)
    torch.testing.assert_close(out[rows_ok], expected_out[rows_ok], atol=1e-5, rtol=0)
    for chunk in (1, 3, 5, T, 100):  # boundaries everywhere, one chunk, more than T
        assert_rows_close(chunked_row_stats(q, k, scale=scale, mask=mask, chunk=chunk), ref, rows_ok)


def test_received_attention_in_chunks_equals_column_sums():
    q, k, _ = random_qkv()
    B, H, T, d = q.shape
    mask, keep = masks(B, T)["padded"]
    weights = (torch.arange(T)[None, :] >= 1) & (torch.arange(T)[None, :] < torch.tensor([T, 9])[:, None])
    maps = explicit_maps(q, k, d**-0.5, keep)
    want = (maps * weights[:, None, :, None]).sum(-2)
    for chunk in (1, 4, T):
        got = chunked_row_stats(q, k, scale=d**-0.5, mask=mask, received_weights=weights.float(), chunk=chunk).received
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_alibi_and_softcap_are_applied_like_the_model_would():
    q, k, _ = random_qkv(H=4, KV=4)
    B, H, T, d = q.shape
    slopes = torch.tensor([0.5, 0.25, 0.125, 0.0625])
    j = torch.arange(T).float()
    s = d**-0.5 * q @ k.transpose(-1, -2)
    s = 3.0 * torch.tanh(s / 3.0) + slopes[None, :, None, None] * j
    s = s.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    ref = rows_from_maps(torch.softmax(s, -1))
    got = chunked_row_stats(q, k, scale=d**-0.5, key_bias=slopes, softcap=3.0, chunk=4)
    assert_rows_close(got, ref, torch.ones(B, H, T, dtype=torch.bool))


def test_row_checks_reject_impossible_statistics():
    T = 5
    ok = RowStats(bos=torch.full((1, 2, T), 0.5), entropy=torch.full((1, 2, T), 0.3), local=torch.full((1, 2, T), 0.5))
    ok.entropy[..., 0] = 0.0  # row 0 sees one key
    check_row_stats(0, ok, torch.tensor([T]))
    bad_bos = RowStats(ok.bos.clone(), ok.entropy, ok.local)
    bad_bos.bos[0, 1, 3] = 1.2
    with pytest.raises(CaptureError, match="BOS weight outside"):
        check_row_stats(2, bad_bos, torch.tensor([T]))
    nan = RowStats(ok.bos, ok.entropy.clone(), ok.local)
    nan.entropy[0, 0, 2] = float("nan")
    with pytest.raises(CaptureError, match="NaN"):
        check_row_stats(0, nan, torch.tensor([T]))
    too_wide = RowStats(ok.bos, ok.entropy.clone(), ok.local)
    too_wide.entropy[0, 0, 1] = math.log(2) + 0.1  # row 1 sees two keys: at most log 2 nats
    with pytest.raises(CaptureError, match="entropy outside"):
        check_row_stats(0, too_wide, torch.tensor([T]))
    nan.entropy[0, 0, 2] = 0.3
    nan.entropy[0, 0, 4] = float("nan")  # padded position of a length-4 sequence: ignored
    check_row_stats(0, nan, torch.tensor([4]))


def encoded(tokenizer, n=3):
    texts = ["A first prompt of some length, with words.", "short", "def g(y):\n    return y + 1  # code"][:n]
    return encode_prompts(tokenizer, [Prompt(f"p{i}", "t", t) for i, t in enumerate(texts)])


def test_a_kernel_returning_wrong_numbers_fails_the_spot_check(tiny_factory, monkeypatch):
    loaded = tiny_factory("llama-gqa")
    real = engine_module.fused_row_stats

    def off_by_a_bit(*args, **kwargs):
        out, rows = real(*args, **kwargs)
        return out, RowStats(rows.bos * 0.97, rows.entropy, rows.local)  # still in range

    monkeypatch.setattr(engine_module, "fused_row_stats", off_by_a_bit)
    with pytest.raises(CaptureError, match="spot check"):
        collect_head_stats(loaded, encoded(loaded.tokenizer), progress=False)


@pytest.mark.parametrize("case", ["llama-gqa", "mistral-gqa3", "qwen2-gqa", "gpt2", "gpt_neox", "bloom"])
def test_the_model_computes_the_same_while_measured(case, tiny_factory):
    """The engine returns what SDPA returns: logits equal the eager path's, measured or not."""
    loaded = tiny_factory(case)
    enc = encoded(loaded.tokenizer)
    width = max(e.length for e in enc)
    ids = torch.full((len(enc), width), loaded.tokenizer.pad_token_id)
    mask = torch.zeros_like(ids)
    for i, e in enumerate(enc):
        ids[i, : e.length], mask[i, : e.length] = torch.tensor(e.ids), 1
    lengths = mask.sum(1)
    with torch.no_grad():
        with loaded.adapter.reference_attention():
            eager = loaded.model(input_ids=ids, attention_mask=mask).logits
        plain = loaded.model(input_ids=ids, attention_mask=mask).logits
        with measure_attention(loaded.adapter, lengths, lambda s: None):
            measured = loaded.model(input_ids=ids, attention_mask=mask).logits
    real = (torch.arange(width)[None, :] < lengths[:, None])
    torch.testing.assert_close(plain[real], eager[real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(measured[real], eager[real], atol=1e-5, rtol=1e-5)
    if loaded.adapter.attention_route == "interface":
        assert loaded.model.config._attn_implementation == ENGINE


def test_layers_can_be_measured_one_at_a_time(tiny_factory):
    """A block-by-block caller measures only the layers it asks for."""
    loaded = tiny_factory("llama-gqa")
    ids = torch.tensor([encoded(loaded.tokenizer)[0].ids])
    seen = []
    with torch.no_grad(), measure_attention(loaded.adapter, torch.tensor([ids.shape[1]]), lambda s: seen.append(s.layer), layers=[1]):
        loaded.model(ids)
    assert seen == [1]


def test_measuring_with_a_cache_is_refused(tiny_factory):
    loaded = tiny_factory("llama-gqa")
    ids = torch.tensor([encoded(loaded.tokenizer)[0].ids])
    with torch.no_grad():
        past = loaded.model(ids[:, :-1], use_cache=True).past_key_values
        with pytest.raises(CaptureError, match="without a cache"), measure_attention(loaded.adapter, torch.tensor([1]), lambda s: None):
            loaded.model(ids[:, -1:], cache=past, use_cache=True)


@pytest.mark.parametrize("case", ["llama-gqa", "bloom"])
def test_bfloat16_differs_from_float32_by_rounding_only(case, tiny_factory):
    loaded = tiny_factory(case)
    enc = encoded(loaded.tokenizer)
    fp32 = collect_head_stats(loaded, enc, progress=False)
    loaded.model.to(torch.bfloat16)
    bf16 = collect_head_stats(loaded, enc, progress=False)
    for m in fp32:
        assert np.isfinite(bf16[m]).all()
        np.testing.assert_allclose(bf16[m], fp32[m], atol=0.1, err_msg=m)


@pytest.mark.parametrize("case", ["llama-gqa", "bloom"])
def test_one_block_run_on_its_own_is_measured(case, tiny_factory):
    """A caller that runs decoder blocks itself (a model streamed block by block) names the
    module to measure; the statistics equal those of the whole model's forward."""
    loaded = tiny_factory(case)
    a, model = loaded.adapter, loaded.model
    ids = torch.tensor([encoded(loaded.tokenizer)[0].ids])
    lengths = torch.tensor([ids.shape[1]])
    whole, alone, inputs = {}, {}, {}
    grab = a.block(1).register_forward_pre_hook(lambda m, args, kwargs: inputs.update(args=args, kwargs=kwargs), with_kwargs=True)
    with torch.no_grad(), measure_attention(a, lengths, lambda s: whole.__setitem__(s.layer, s.rows)):
        model(ids, use_cache=False)
    grab.remove()
    target = a.attention_module(1) if a.attention_route == "interface" else a.projection_module(1)
    with torch.no_grad(), measure_attention(a, lengths, lambda s: alone.__setitem__(s.layer, s.rows), layers=[1], modules={1: target}):
        a.block(1)(*inputs["args"], **inputs["kwargs"])
    assert list(alone) == [1]
    assert_rows_close(alone[1], whole[1], torch.ones_like(whole[1].bos, dtype=torch.bool), atol=1e-6)
