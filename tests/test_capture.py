"""The engine's statistics equal a plain computation from transformers' eager maps.

The reference runs each prompt *alone* (no padding) on transformers' eager attention with
``output_attentions=True`` and computes the metrics with explicit Python loops over the full
maps. The engine's numbers come from right-padded batches of prompts of different lengths, on the
fused route and on the chunked route with chunks of 3 query rows (so chunk boundaries fall inside
every prompt), so agreement to 1e-5 shows that the engine computes the probabilities the model
uses, that padding never moves position 0, and that chunking changes nothing. The eager capture
(``stream_attention``, the reference path) is tested here too. Family specifics are
written out the same obvious way: on a sliding-window layer BOS mass averages the rows that can
see position 0 (``t < window``), and for a learned sink (gpt-oss, whose reference weights carry
the sink's share as a last column) entropy counts the sink as one more outcome and
``sink_mass`` is its share.
"""

from __future__ import annotations

import math
import weakref

import numpy as np
import pytest
import torch

from headsurgeon.capture import ENGINE, AttentionBatch, check_attention_map, stream_attention
from headsurgeon.diagnosis import collect_head_stats
from headsurgeon.errors import CaptureError
from headsurgeon.prompts import Prompt
from headsurgeon.prompts.encoding import encode_prompts

TEXTS = [
    "Hi there.",
    "A somewhat longer prompt, with commas; and more.",
    "def f(x):\n    return x * 2  # a third length again",
    "a short one",
    "Ünïcödé bytes make this byte-level prompt longer than it looks!",
]


def encoded_prompts(tokenizer):
    prompts = [Prompt(f"p{i}", "test", t) for i, t in enumerate(TEXTS)]
    enc = encode_prompts(tokenizer, prompts)
    assert len({e.length for e in enc}) == len(enc), "lengths must differ so that batches are padded"
    return enc


def reference_stats(A: np.ndarray, include_first_query: bool, window: int | None = None,
                    sink: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Metrics of one prompt's ``[heads, T, T]`` map, written out the slow, obvious way
    (``sink``: ``[heads, T]`` share of each row taken by a learned sink)."""
    H, T, _ = A.shape
    queries = range(0 if include_first_query else 1, T)
    out = {"bos_mass": np.zeros(H), "entropy": np.zeros(H), "local_mass": np.zeros(H), "bos_rows": 0}
    if sink is not None:
        out["sink_mass"] = np.zeros(H)
    for h in range(H):
        bos, ent, loc, snk = [], [], [], []
        for t in queries:
            if window is None or t < window:
                bos.append(A[h, t, 0])
            e = -sum(A[h, t, j] * math.log(A[h, t, j]) for j in range(t + 1) if A[h, t, j] > 0)
            if sink is not None:
                e -= sink[h, t] * math.log(sink[h, t])
                snk.append(sink[h, t])
            ent.append(e)
            loc.append(sum(A[h, t, j] for j in range(max(0, t - 2), t + 1)))
        out["bos_mass"][h], out["entropy"][h], out["local_mass"][h] = np.mean(bos), np.mean(ent), np.mean(loc)
        out["bos_rows"] = len(bos)
        if sink is not None:
            out["sink_mass"][h] = np.mean(snk)
    return out


@torch.no_grad()
def reference(loaded, encoded, include_first_query: bool) -> dict[str, np.ndarray]:
    a = loaded.adapter
    L, H = a.num_layers, a.num_heads
    metrics = ("bos_mass", "entropy", "local_mass") + (("sink_mass",) if a.sink_column else ())
    ref = {m: np.zeros((len(encoded), L, H)) for m in metrics}
    ref["bos_rows"] = np.zeros((len(encoded), L))
    for p, e in enumerate(encoded):
        with loaded.adapter.reference_attention():
            maps = loaded.model(torch.tensor([e.ids]), output_attentions=True).attentions
        for layer, A in enumerate(maps):
            A = A[0].double().numpy()
            sink = None
            if a.sink_column:
                A, sink = A[..., :-1], A[..., -1]
                np.testing.assert_allclose(A.sum(-1) + sink, 1.0, atol=1e-6)
            assert A.shape == (H, e.length, e.length)
            for m, v in reference_stats(A, include_first_query, a.attention_window(layer), sink).items():
                ref[m][p, layer] = v
    return ref


@pytest.mark.parametrize("include_first_query", [False, True])
def test_engine_stats_equal_eager_maps(tiny, include_first_query):
    enc = encoded_prompts(tiny.tokenizer)
    ref = reference(tiny, enc, include_first_query)
    for batch_size, route, chunk in ((len(enc), "auto", None), (2, "auto", None), (len(enc), "chunked", 3), (2, "chunked", 1)):
        got = collect_head_stats(
            tiny, enc, batch_size=batch_size, include_first_query=include_first_query, progress=False, route=route, chunk=chunk,
        )
        for m in ref:
            assert got[m].shape == ref[m].shape
            np.testing.assert_allclose(got[m], ref[m], atol=1e-5, rtol=0, err_msg=f"{m}, batch {batch_size}, {route} {chunk}")
    # the maps are far from uniform, so an equality above is not an accident of symmetry
    assert ref["bos_mass"].std() > 0.02


def test_query_zero_is_excluded_by_default(tiny_llama):
    enc = encoded_prompts(tiny_llama.tokenizer)
    excl = collect_head_stats(tiny_llama, enc, progress=False)["bos_mass"]
    incl = collect_head_stats(tiny_llama, enc, include_first_query=True, progress=False)["bos_mass"]
    T = np.array([e.length for e in enc], dtype=float)[:, None, None]
    # query 0 puts all its attention on itself: incl = (1 + (T - 1) * excl) / T exactly
    np.testing.assert_allclose(incl, (1 + (T - 1) * excl) / T, atol=1e-6)
    assert (incl > excl).all()


def test_stream_calls_back_layer_by_layer_and_releases_maps(tiny):
    """Each callback sees one layer; the previous layer's map is already gone (no hoarding)."""
    ids = torch.tensor([encoded_prompts(tiny.tokenizer)[1].ids])
    lengths = torch.tensor([ids.shape[1]])
    seen, refs = [], []

    def on_layer(batch: AttentionBatch) -> None:
        alive = [r for r in refs if r() is not None]
        seen.append((batch.layer, tuple(batch.weights.shape), len(alive)))
        refs.append(weakref.ref(batch.weights))

    with torch.no_grad(), stream_attention(tiny.adapter, lengths, on_layer):
        tiny.model(ids)
    H, T = tiny.adapter.num_heads, ids.shape[1]
    assert [s[0] for s in seen] == list(range(tiny.adapter.num_layers))
    assert all(s[1] == (1, H, T, T) for s in seen)
    assert all(s[2] == 0 for s in seen), seen  # earlier layers' maps were freed
    for layer in range(tiny.adapter.num_layers):
        assert not tiny.adapter.attention_module(layer)._forward_hooks


def test_hooks_are_removed_when_the_callback_fails(tiny_llama):
    a = tiny_llama.adapter
    ids = torch.tensor([tiny_llama.tokenizer("some text here")["input_ids"]])

    def boom(batch):
        raise RuntimeError("callback failed")

    with pytest.raises(RuntimeError, match="callback failed"):
        with torch.no_grad(), stream_attention(a, torch.tensor([ids.shape[1]]), boom):
            tiny_llama.model(ids)
    assert all(not a.attention_module(l)._forward_hooks for l in range(a.num_layers))


# ----- backends the engine cannot measure ---------------------------------------------------
def test_wrap_model_selects_the_engine(tiny_factory):
    from headsurgeon.models import wrap_model
    from headsurgeon.models.tiny import tiny_model_and_tokenizer

    model, tok = tiny_model_and_tokenizer("llama")
    model.set_attn_implementation("sdpa")
    assert model.config._attn_implementation == "sdpa"
    wrap_model(model, tok)
    assert model.config._attn_implementation == ENGINE


@pytest.mark.parametrize("case", ["llama-gqa", "mistral-gqa3", "qwen2-gqa", "gpt2", "gpt_neox"])
@pytest.mark.parametrize("backend", ["sdpa", "eager"])
def test_other_backends_fail_loudly(case, backend, tiny_factory):
    """transformers 5.23 quietly returns ``None`` weights under SDPA (and an *empty* tuple for
    ``output_attentions=True``): a backend the engine is not part of must be refused, not
    reported as zeros."""
    loaded = tiny_factory(case)
    loaded.model.set_attn_implementation(backend)
    enc = encoded_prompts(loaded.tokenizer)
    with pytest.raises(CaptureError, match=f"'{backend}'.*cannot measure"):
        collect_head_stats(loaded, enc, progress=False)


def test_the_reference_capture_refuses_a_backend_without_weights(tiny_factory):
    loaded = tiny_factory("llama-gqa")
    ids = torch.tensor([loaded.tokenizer("some text here")["input_ids"]])
    with pytest.raises(CaptureError, match="returned no weights"):
        with torch.no_grad(), stream_attention(loaded.adapter, torch.tensor([ids.shape[1]]), lambda b: None):
            loaded.model.set_attn_implementation("sdpa")  # switched behind the reference's back
            loaded.model(ids)


def test_layer_bypassing_the_adapter_is_an_error(tiny_llama, monkeypatch):
    a = tiny_llama.adapter
    real = a.attention_module
    monkeypatch.setattr(a, "attention_module", lambda layer: torch.nn.Identity() if layer == 1 else real(layer))
    with pytest.raises(CaptureError, match="measured for layers"):
        collect_head_stats(tiny_llama, encoded_prompts(tiny_llama.tokenizer), progress=False)


@pytest.mark.parametrize("case", ["llama-gqa", "bloom"])
def test_bfloat16_models_are_measured_not_refused(case, tiny_factory):
    """bf16 rounding moves row sums by a few 1e-3: that is precision, not a broken backend."""
    loaded = tiny_factory(case)
    enc = encode_prompts(loaded.tokenizer, [Prompt("long", "t", " ".join(TEXTS) * 4)])
    assert enc[0].length > 300
    fp32 = collect_head_stats(loaded, enc, progress=False)
    loaded.model.to(torch.bfloat16)
    bf16 = collect_head_stats(loaded, enc, progress=False)
    np.testing.assert_allclose(bf16["bos_mass"], fp32["bos_mass"], atol=0.05)


# ----- map checks ---------------------------------------------------------------------------
def _causal_uniform(B: int, H: int, T: int) -> torch.Tensor:
    w = torch.tril(torch.ones(T, T))
    return (w / w.sum(-1, keepdim=True)).expand(B, H, T, T).clone()


def test_check_accepts_a_valid_causal_map():
    check_attention_map(AttentionBatch(0, _causal_uniform(2, 3, 5), torch.tensor([5, 5])))


def test_check_rejects_rows_not_summing_to_one():
    w = _causal_uniform(1, 2, 4)
    w[0, 1, 2] *= 0.9
    with pytest.raises(CaptureError, match="do not sum to 1"):
        check_attention_map(AttentionBatch(3, w, torch.tensor([4])))


def test_check_rejects_non_causal_maps():
    w = torch.full((1, 2, 4, 4), 0.25)  # rows sum to 1 but attend to the future
    with pytest.raises(CaptureError, match="causal"):
        check_attention_map(AttentionBatch(0, w, torch.tensor([4])))


def test_check_rejects_nan():
    w = _causal_uniform(1, 1, 3)
    w[0, 0, 2, 1] = float("nan")
    with pytest.raises(CaptureError, match="NaN"):
        check_attention_map(AttentionBatch(0, w, torch.tensor([3])))


def test_check_ignores_padded_queries():
    w = _causal_uniform(2, 2, 5)
    w[1, :, 4, :] = 0.0  # padded query rows of the second sequence (length 3) are garbage:
    w[1, :, 3, :] = 0.2  # rows not summing to 1, weight above the diagonal
    check_attention_map(AttentionBatch(0, w, torch.tensor([5, 3])))
    with pytest.raises(CaptureError):
        check_attention_map(AttentionBatch(0, w, torch.tensor([5, 5])))
