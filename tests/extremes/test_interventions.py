"""Head zeroing and sink removal against direct computations."""

import pytest
import torch

from headsurgeon.capture import stream_attention
from headsurgeon.errors import HeadsurgeonError
from headsurgeon.extremes.interventions import mask_out_keys, remove_sink_attention, zero_heads
from headsurgeon.models import HeadRef, wrap_model
from headsurgeon.models.tiny import tiny_model_and_tokenizer


def batch(T=10, lengths=(10, 7), seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 256, (len(lengths), T), generator=g)
    mask = (torch.arange(T)[None] < torch.tensor(lengths)[:, None]).long()
    return ids, mask


def test_zero_hook_equals_zeroing_the_output_slice(tiny):
    model, a = tiny.model, tiny.adapter
    ids, mask = batch()
    ref = HeadRef(1, 2)
    with torch.no_grad():
        base = model(input_ids=ids, attention_mask=mask).logits
        with zero_heads(a, [ref]):
            hooked = model(input_ids=ids, attention_mask=mask).logits
        o = a.head_slices(ref.layer, ref.head).o_weight
        o.view(a.parameter(o.param)).zero_()  # the same head, removed in the weights instead
        weights = model(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(hooked, weights, atol=1e-5, rtol=1e-5)
    assert (hooked - base).abs().max() > 1e-3  # the head mattered, so the comparison means something


def test_zero_hook_is_removed_on_exit():
    model, tok = tiny_model_and_tokenizer("llama")
    a = wrap_model(model, tok).adapter
    ids, mask = batch()
    with torch.no_grad():
        base = model(input_ids=ids, attention_mask=mask).logits
        with zero_heads(a, [HeadRef(0, 1)]):
            pass
        after = model(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(base, after)


def renormalised(p: torch.Tensor, sinks: list[int], learned: torch.Tensor | None = None) -> torch.Tensor:
    """Expected probabilities: sink columns removed, each row renormalised (rows with nothing
    else visible stay as they were). ``learned``: a learned sink's share of each row (gpt-oss),
    which stays in the softmax and so in the normaliser."""
    q = p.clone()
    for t in range(p.shape[0]):
        rest = [j for j in range(t + 1) if j not in sinks]
        if rest:
            q[t, sinks] = 0
            q[t] = q[t] / (q[t].sum() + (0 if learned is None else learned[t]))
    return q


def test_sink_removal_renormalises_only_the_chosen_head(tiny):
    model, a = tiny.model, tiny.adapter
    ids, mask = batch()
    lengths = mask.sum(1)
    sinks = [[0, 3], [0]]
    ref = HeadRef(1, 2)
    base, new, learned = {}, {}, {}

    def keep(store):
        def on_layer(b):
            store[b.layer] = b.weights.clone()
            if store is base and b.sink is not None:
                learned[b.layer] = b.sink.clone()
        return on_layer

    with torch.no_grad():
        with stream_attention(a, lengths, keep(base)):
            model(input_ids=ids, attention_mask=mask)
        with remove_sink_attention(a, [ref], sinks), stream_attention(a, lengths, keep(new)):
            model(input_ids=ids, attention_mask=mask)
    torch.testing.assert_close(new[0], base[0])  # earlier layer untouched
    others = [h for h in range(a.num_heads) if h != ref.head]
    torch.testing.assert_close(new[1][:, others], base[1][:, others])
    for b, (n, s) in enumerate(zip(lengths.tolist(), sinks)):
        share = learned[1][b, ref.head, :n] if learned else None
        expected = renormalised(base[1][b, ref.head, :n, :n], s, share)
        torch.testing.assert_close(new[1][b, ref.head, :n, :n], expected, atol=1e-5, rtol=1e-5)
        # query 0 sees only the sink: unchanged (all on key 0, less a learned sink's share)
        assert new[1][b, ref.head, 0, 0] == pytest.approx(1.0 - (0 if share is None else share[0].item()))


def test_mask_edit_equals_direct_softmax_renormalisation():
    torch.manual_seed(0)
    T, H = 6, 3
    logits = torch.randn(1, H, T, T)
    lowest = torch.finfo(torch.float32).min
    causal = torch.zeros(1, 1, T, T).masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), lowest)
    p = torch.softmax(logits + causal, -1)
    edited = mask_out_keys(causal, [1], [[2]], H)
    q = torch.softmax(logits + edited, -1)
    torch.testing.assert_close(q[0, 1], renormalised(p[0, 1], [2]))
    torch.testing.assert_close(q[0, [0, 2]], p[0, [0, 2]])
    assert edited.shape == (1, H, T, T) and causal.shape == (1, 1, T, T)  # input not modified in place


def test_boolean_keep_masks_are_edited_like_float_masks():
    T, H = 5, 2
    keep = torch.ones(T, T, dtype=torch.bool).tril()[None, None]
    lowest = torch.finfo(torch.float32).min
    additive = torch.zeros(1, 1, T, T).masked_fill(~keep, lowest)
    edited_keep = mask_out_keys(keep, [1], [[0, 2]], H)
    edited_add = mask_out_keys(additive, [1], [[0, 2]], H)
    assert edited_keep.dtype == torch.bool
    assert torch.equal(edited_keep, edited_add > lowest / 2)


def test_sink_removal_under_the_engine_equals_it_under_eager(tiny):
    """The engine's SDPA path gets a boolean mask (or none): the intervention's result is the same."""
    model, a = tiny.model, tiny.adapter
    ids, mask = batch()
    real = (torch.arange(ids.shape[1])[None, :] < mask.sum(1)[:, None])
    for m, sinks in ((mask, [[0, 3], [0]]), (None, [[0], [0, 1]])):  # padded batch, and no mask at all
        with torch.no_grad(), remove_sink_attention(a, [HeadRef(1, 2), HeadRef(0, 1)], sinks):
            engine = model(input_ids=ids, attention_mask=m).logits
            with a.reference_attention():
                eager = model(input_ids=ids, attention_mask=m).logits
        rows = real if m is not None else torch.ones_like(real)
        torch.testing.assert_close(engine[rows], eager[rows], atol=1e-5, rtol=1e-5)


def test_errors():
    with pytest.raises(HeadsurgeonError, match="additive float or boolean mask"):
        mask_out_keys(torch.ones(1, 1, 4, 4, dtype=torch.long), [0], [[0]], 2)
    model, tok = tiny_model_and_tokenizer("gpt2")
    a = wrap_model(model, tok).adapter
    with pytest.raises(HeadsurgeonError, match="does not exist"):
        with zero_heads(a, [HeadRef(5, 0)]):
            pass
    ids, mask = batch()
    with pytest.raises(HeadsurgeonError, match="sink positions were given for 1"):
        with remove_sink_attention(a, [HeadRef(0, 0)], [[0]]), torch.no_grad():
            model(input_ids=ids, attention_mask=mask)
