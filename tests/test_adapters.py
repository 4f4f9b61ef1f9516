"""Family adapters: the slices they name are exactly the ones the forward pass uses.

Two kinds of evidence, for every tiny family (``FAMILY_CASES`` in ``conftest.py``):

* marker values: write a distinct constant into every head's Q/K/V/O regions through
  ``TensorSlice.view`` and read it back; the regions of all heads tile the attention parameters
  exactly once (no overlap, nothing left over), and writing one head touches no other byte;
* behaviour: perturbing head h's Q slice changes only head h's attention map; perturbing KV group
  g's K slice changes exactly the query heads of group g; V and O slices leave the maps alone but
  change the head's output, and zeroing head h's O slice is the same as zeroing head h's segment
  of the output projection's input.

Families whose attention is coupled across heads (OLMo 2's query norm over all heads) declare
``surgery_is_local = False``; for them the behaviour tests assert the coupling instead. Attention
parameters that belong to no head (q/k norm weights, learned sinks) are the adapter's
``shared_parameters``; the tiling test checks that they, and only they, are left out.
"""

from __future__ import annotations

import pytest
import torch

from headsurgeon.capture import ENGINE
from headsurgeon.errors import UnsupportedArchitectureError
from headsurgeon.models import adapter_for, supported_model_types, wrap_model

TEXT = "The quick brown fox jumps over the lazy dog, twice."
KINDS = ("q_weight", "k_weight", "v_weight", "o_weight", "q_bias", "k_bias", "v_bias")
SHARED_BY_GROUP = {"k_weight", "v_weight", "k_bias", "v_bias"}


def regions(adapter, layer, head) -> dict:
    s = adapter.head_slices(layer, head)
    return {k: getattr(s, k) for k in KINDS if getattr(s, k) is not None}


def marker(layer: int, kind: str, unit: int) -> float:
    """A distinct, exactly representable constant per (layer, region kind, head or KV group)."""
    return 1000.0 + 100.0 * layer + 10.0 * KINDS.index(kind) + unit


def region_mask(param: torch.Tensor, regs) -> torch.Tensor:
    mask = torch.zeros(param.shape, dtype=torch.bool)
    for r in regs:
        r.view(mask).fill_(True)
    return mask


def attention_param_names(adapter, layer) -> set[str]:
    """Every parameter of the layer's attention module except the output projection's bias and
    the parameters the adapter declares shared by all heads (q/k norm weights, sinks)."""
    prefix = adapter.path(adapter.attention_path, layer)
    o_bias = getattr(adapter.output_projection(layer), "bias", None)
    shared = set(adapter.shared_parameters(layer))
    names = set()
    for name, p in adapter.attention_module(layer).named_parameters():
        if o_bias is not None and p is o_bias:
            continue
        if f"{prefix}.{name}" in shared:
            continue
        names.add(f"{prefix}.{name}")
    return names


def input_ids(loaded) -> torch.Tensor:
    return torch.tensor([loaded.tokenizer(TEXT)["input_ids"]])


@torch.no_grad()
def attention_maps(loaded, ids) -> list[torch.Tensor]:
    """Per-layer ``[heads, T, T]`` maps from the library's own ``output_attentions=True`` (eager;
    for a learned-sink family, the real keys' columns: the sink's is the last one)."""
    with loaded.adapter.reference_attention():
        out = loaded.model(ids, output_attentions=True)
    assert len(out.attentions) == loaded.adapter.num_layers
    cut = -1 if loaded.adapter.sink_column else None
    return [a[0, ..., :cut].clone() for a in out.attentions]


def perturb(adapter, regs, seed: int, scale: float = 2.0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for r in regs:
            v = r.view(adapter.parameter(r.param).data)
            v.add_(torch.randn(v.shape, generator=gen) * scale)


def snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def restore(model, saved) -> None:
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(saved[n])


def changed(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


# ----- geometry ---------------------------------------------------------------------------
def test_adapter_reports_config_geometry(tiny):
    a, cfg = tiny.adapter, tiny.model.config
    family, kw = tiny.family, tiny.overrides
    assert a.num_layers == 2
    assert a.num_heads == kw.get("heads", 4)
    assert a.head_dim * a.num_heads == a.hidden_size == kw.get("hidden", 32)
    grouped = ("llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3", "olmo2", "phi3", "gpt_oss")
    expected_kv = kw.get("kv_heads", 2) if family in grouped else a.num_heads
    if family == "falcon":  # three layouts
        expected_kv = 1 if kw.get("multi_query") else a.num_heads if kw.get("alibi") else 2
    assert a.num_kv_heads == expected_kv
    expected_impl = {"bloom": "eager", "mpt": "eager", "falcon": "sdpa"}.get(family, ENGINE)  # no interface: own paths
    assert cfg._attn_implementation == expected_impl
    for h in range(a.num_heads):
        assert a.head_slices(0, h).kv_group == a.kv_group(h) == h // (a.num_heads // a.num_kv_heads)
        assert h in a.heads_in_group(a.kv_group(h))
    assert a.describe()["num_kv_heads"] == expected_kv


def test_gqa_cases_really_share_kv(tiny_factory):
    a = tiny_factory("mistral-gqa3").adapter
    assert (a.num_heads, a.num_kv_heads, a.heads_per_group) == (6, 2, 3)
    assert [a.kv_group(h) for h in range(6)] == [0, 0, 0, 1, 1, 1]
    assert a.head_slices(1, 0).k_weight == a.head_slices(1, 2).k_weight != a.head_slices(1, 3).k_weight


def test_head_out_of_range_is_a_user_error(tiny):
    from headsurgeon.errors import HeadsurgeonError

    a = tiny.adapter
    with pytest.raises(HeadsurgeonError, match="does not exist"):
        a.head_slices(a.num_layers, 0)
    with pytest.raises(HeadsurgeonError, match="does not exist"):
        a.head_slices(0, a.num_heads)


# ----- marker values ----------------------------------------------------------------------
def test_marker_values_read_back_and_tile_the_attention_parameters(tiny):
    a, model = tiny.adapter, tiny.model
    before = snapshot(model)
    coverage: dict[str, list] = {}
    with torch.no_grad():
        for layer in range(a.num_layers):
            for head in range(a.num_heads):
                for kind, r in regions(a, layer, head).items():
                    assert r.size == a.head_dim, (kind, r)
                    unit = a.kv_group(head) if kind in SHARED_BY_GROUP else head
                    r.view(a.parameter(r.param).data).fill_(marker(layer, kind, unit))
                    coverage.setdefault(r.param, []).append(r)
    # every head reads back exactly its own constants (nobody overwrote anybody else)
    for layer in range(a.num_layers):
        for head in range(a.num_heads):
            for kind, r in regions(a, layer, head).items():
                unit = a.kv_group(head) if kind in SHARED_BY_GROUP else head
                got = r.view(a.parameter(r.param))
                assert torch.all(got == marker(layer, kind, unit)), (layer, head, kind)
    # the regions cover every attention parameter completely (apart from the o-proj bias,
    # which belongs to no head), so no head's rows were forgotten
    for layer in range(a.num_layers):
        names = attention_param_names(a, layer)
        assert names <= set(coverage), names - set(coverage)
        for name in names:
            assert region_mask(a.parameter(name), coverage[name]).all(), name
    # and nothing outside them was touched
    for name, p in model.named_parameters():
        if name not in coverage:
            assert torch.equal(p, before[name]), name


def test_writing_one_head_changes_no_other_byte(tiny):
    a, model = tiny.adapter, tiny.model
    params = dict(model.named_parameters())
    for layer, head in [(0, 0), (a.num_layers - 1, a.num_heads - 1), (1, a.num_heads // 2)]:
        before = snapshot(model)
        regs = list(regions(a, layer, head).values())
        assert len({(r.param, r.dim, r.start) for r in regs}) == len(regs)
        with torch.no_grad():
            for r in regs:
                r.view(a.parameter(r.param).data).fill_(-12345.0)
        for name, p in params.items():
            expected = region_mask(p, [r for r in regs if r.param == name])
            assert torch.equal(p != before[name], expected), (layer, head, name)
        restore(model, before)


def test_adapter_parameters_are_the_models_own_tensors(tiny):
    a = tiny.adapter
    params = dict(tiny.model.named_parameters())
    for r in regions(a, 1, 1).values():
        assert a.parameter(r.param) is params[r.param]
        view = r.view(params[r.param])  # a view into the parameter, not a copy
        assert view.untyped_storage().data_ptr() == params[r.param].untyped_storage().data_ptr()


# ----- behaviour: the forward pass uses exactly these regions ---------------------------------
def test_q_slice_changes_only_that_heads_map(tiny):
    a, model = tiny.adapter, tiny.model
    ids = input_ids(tiny)
    base = attention_maps(tiny, ids)
    saved = snapshot(model)
    for layer in range(a.num_layers):
        for head in range(a.num_heads):
            s = a.head_slices(layer, head)
            perturb(a, [s.q_weight] + ([s.q_bias] if s.q_bias else []), seed=head)
            new = attention_maps(tiny, ids)
            for earlier in range(layer):
                assert torch.equal(new[earlier], base[earlier])
            assert changed(new[layer][head], base[layer][head]) > 1e-3, (layer, head)
            others = [h for h in range(a.num_heads) if h != head]
            if a.surgery_is_local:
                torch.testing.assert_close(new[layer][others], base[layer][others], atol=1e-6, rtol=0)
            else:  # declared coupling (OLMo 2: one query norm over all heads): the others move too
                assert min(changed(new[layer][h], base[layer][h]) for h in others) > 1e-4, (layer, head)
            restore(model, saved)


def test_k_slice_changes_exactly_the_heads_of_its_kv_group(tiny):
    a, model = tiny.adapter, tiny.model
    ids = input_ids(tiny)
    base = attention_maps(tiny, ids)
    saved = snapshot(model)
    layer = a.num_layers - 1
    for group in range(a.num_kv_heads):
        members = a.heads_in_group(group)
        s = a.head_slices(layer, members[0])
        perturb(a, [s.k_weight] + ([s.k_bias] if s.k_bias else []), seed=10 + group)
        new = attention_maps(tiny, ids)
        for h in range(a.num_heads):
            diff = changed(new[layer][h], base[layer][h])
            if h in members:
                assert diff > 1e-3, (group, h)
            elif a.surgery_is_local:
                assert diff < 1e-6, (group, h)
            else:  # OLMo 2's key norm spans every KV head
                assert diff > 1e-4, (group, h)
        assert torch.equal(new[0], base[0]) or layer == 0
        restore(model, saved)


@torch.no_grad()
def _oproj_input(loaded, ids, layer) -> torch.Tensor:
    seen = {}
    hook = loaded.adapter.output_projection(layer).register_forward_pre_hook(
        lambda m, args: seen.__setitem__("x", args[0].detach().clone())
    )
    try:
        loaded.model(ids)
    finally:
        hook.remove()
    return seen["x"][0]  # [T, heads * head_dim]


def test_v_slice_changes_only_its_groups_output_not_the_maps(tiny):
    a, model = tiny.adapter, tiny.model
    ids = input_ids(tiny)
    layer = a.num_layers - 1
    base_maps, base_x = attention_maps(tiny, ids), _oproj_input(tiny, ids, layer)
    assert base_x.shape[-1] == a.num_heads * a.head_dim
    saved = snapshot(model)
    for group in range(a.num_kv_heads):
        members = a.heads_in_group(group)
        s = a.head_slices(layer, members[0])
        perturb(a, [s.v_weight] + ([s.v_bias] if s.v_bias else []), seed=20 + group)
        maps, x = attention_maps(tiny, ids), _oproj_input(tiny, ids, layer)
        torch.testing.assert_close(maps[layer], base_maps[layer], atol=1e-6, rtol=0)
        for h in range(a.num_heads):
            lo, hi = a.head_output_range(h)
            diff = changed(x[:, lo:hi], base_x[:, lo:hi])
            assert (diff > 1e-3) if h in members else (diff < 1e-6), (group, h, diff)
        restore(model, saved)


@torch.no_grad()
def _block_output(loaded, ids, layer) -> torch.Tensor:
    seen = {}
    hook = loaded.adapter.block(layer).register_forward_hook(lambda m, args, out: seen.__setitem__("out", out))
    try:
        loaded.model(ids)
    finally:
        hook.remove()
    return loaded.adapter.block_hidden(seen["out"]).clone()


def test_block_output_is_the_residual_stream(tiny):
    ids = input_ids(tiny)
    with torch.no_grad():
        hidden = tiny.model(ids, output_hidden_states=True).hidden_states
    out = _block_output(tiny, ids, 0)
    assert out.shape == (1, ids.shape[1], tiny.adapter.hidden_size)
    torch.testing.assert_close(out, hidden[1], atol=1e-6, rtol=0)


def test_o_slice_leaves_maps_but_changes_the_layer_output(tiny):
    a, model = tiny.adapter, tiny.model
    ids = input_ids(tiny)
    layer = a.num_layers - 1
    base_maps, base_out = attention_maps(tiny, ids), _block_output(tiny, ids, layer)
    saved = snapshot(model)
    for head in range(a.num_heads):
        perturb(a, [a.head_slices(layer, head).o_weight], seed=30 + head)
        maps, out = attention_maps(tiny, ids), _block_output(tiny, ids, layer)
        for l in range(a.num_layers):
            torch.testing.assert_close(maps[l], base_maps[l], atol=1e-6, rtol=0)
        assert changed(out, base_out) > 1e-3
        restore(model, saved)


def test_zeroing_o_slice_equals_zeroing_the_heads_input_segment(tiny):
    a, model = tiny.adapter, tiny.model
    ids = input_ids(tiny)
    with torch.no_grad():
        base = model(ids).logits
    saved = snapshot(model)
    for layer in range(a.num_layers):
        for head in (0, a.num_heads - 1):
            with torch.no_grad():
                r = a.head_slices(layer, head).o_weight
                r.view(a.parameter(r.param).data).zero_()
                zeroed_weights = model(ids).logits
            restore(model, saved)

            def ablate(h):
                lo, hi = a.head_output_range(h)

                def pre_hook(module, args):
                    x = args[0].clone()
                    x[..., lo:hi] = 0
                    return (x,) + tuple(args[1:])

                return a.output_projection(layer).register_forward_pre_hook(pre_hook)

            with torch.no_grad():
                handle = ablate(head)
                try:
                    zeroed_input = model(ids).logits
                finally:
                    handle.remove()
                other = (head + 1) % a.num_heads
                handle = ablate(other)
                try:
                    zeroed_other = model(ids).logits
                finally:
                    handle.remove()
            assert changed(zeroed_weights, base) > 1e-4, (layer, head)
            torch.testing.assert_close(zeroed_weights, zeroed_input, atol=1e-5, rtol=0)
            assert changed(zeroed_other, zeroed_weights) > 1e-4  # the segment is head-specific


# ----- ALiBi ------------------------------------------------------------------------------------
@pytest.mark.parametrize("heads", [4, 6, 16])
def test_bloom_alibi_slopes_match_the_library(heads, tiny_factory):
    from transformers.models.bloom.modeling_bloom import build_alibi_tensor

    a = tiny_factory("bloom", heads=heads, hidden=8 * heads).adapter
    slopes = a.alibi_slopes()
    assert slopes.shape == (heads,)
    T = 7
    alibi = build_alibi_tensor(torch.ones(1, T), heads, torch.float32)  # [heads, 1, T] = slope * key pos
    torch.testing.assert_close(alibi[:, 0, :], slopes[:, None] * torch.arange(T, dtype=torch.float32))


def test_bloom_alibi_known_values(tiny_factory):
    s16 = tiny_factory("bloom", heads=16, hidden=128).adapter.alibi_slopes()
    assert s16[0].item() == pytest.approx(2 ** -0.5, abs=1e-6)  # 0.7071: the steepest
    assert s16[15].item() == pytest.approx(2 ** -8, abs=1e-7)  # 0.0039: the gentlest
    assert torch.all(s16[1:] < s16[:-1])
    # 6 heads: 4 power-of-two slopes, then extra ones interleaved from the 8-head sequence
    s6 = tiny_factory("bloom-6heads").adapter.alibi_slopes()
    expected = [2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8, 2 ** -1, 2 ** -3]
    torch.testing.assert_close(s6, torch.tensor(expected))


@pytest.mark.parametrize("case", ["bloom", "bloom-6heads", "mpt", "mpt-6heads", "falcon-alibi"])
def test_alibi_slope_is_the_one_the_forward_pass_uses(case, tiny_factory):
    """With head h's Q zeroed its scores are pure ALiBi, so log(A[t, j+1] / A[t, j]) = slope_h
    (for Falcon, the slope the logits see: bfloat16-rounded, over sqrt(head_dim), added once)."""
    loaded = tiny_factory(case)
    a = loaded.adapter
    slopes = a.alibi_slopes()
    with torch.no_grad():
        for h in range(a.num_heads):
            s = a.head_slices(1, h)
            for r in (s.q_weight, s.q_bias):
                if r is not None:
                    r.view(a.parameter(r.param).data).zero_()
    A = attention_maps(loaded, input_ids(loaded))[1]  # [H, T, T]
    T = A.shape[-1]
    measured = torch.log(A[:, T - 1, 1:] / A[:, T - 1, :-1]).mean(-1)
    torch.testing.assert_close(measured, slopes, atol=1e-4, rtol=1e-4)


def test_non_alibi_families_have_no_slopes(tiny):
    if tiny.family in ("bloom", "mpt") or tiny.overrides.get("alibi"):
        assert tiny.adapter.alibi_slopes() is not None
    else:
        assert tiny.adapter.alibi_slopes() is None


# ----- unsupported ------------------------------------------------------------------------
def test_unsupported_architecture_names_the_supported_types():
    from transformers import OPTConfig, OPTForCausalLM

    from headsurgeon.models.tiny import byte_tokenizer

    cfg = OPTConfig(vocab_size=259, hidden_size=16, num_hidden_layers=1, ffn_dim=32, num_attention_heads=2,
                    word_embed_proj_dim=16, max_position_embeddings=32)
    model = OPTForCausalLM(cfg)
    with pytest.raises(UnsupportedArchitectureError) as info:
        adapter_for(model)
    msg = str(info.value)
    assert "'opt'" in msg and "\n" not in msg
    supported = {"bloom", "gpt2", "gpt_neox", "llama", "mistral", "qwen2",
                 "qwen3", "gemma2", "gemma3_text", "olmo2", "phi3", "gpt_oss", "falcon", "mpt"}
    for t in supported:
        assert t in msg
    assert set(supported_model_types()) == supported
    with pytest.raises(UnsupportedArchitectureError):
        wrap_model(model, byte_tokenizer())


@pytest.mark.parametrize("case,inside", [
    ("llama-gqa", "sdpa"), ("gpt2", "sdpa"), ("gpt_neox", "sdpa"), ("bloom", "eager"),
    ("qwen3-gqa", "sdpa"), ("gemma3", "sdpa"), ("olmo2", "sdpa"), ("phi3-gqa", "sdpa"), ("mistral-window", "sdpa"),
    ("falcon-groups", "sdpa"), ("falcon-mq", "sdpa"), ("falcon-alibi", "sdpa"),
    # transformers refuses SDPA for these: their training steps stay on the path they support (the
    # engine computes soft-capped / sink-aware attention itself; MPT has its own explicit path)
    ("gemma2", ENGINE), ("gpt_oss", ENGINE), ("mpt", "eager"), ("mpt-6heads", "eager"),
])
def test_training_attention_is_sdpa_inside_and_the_engine_again_after(case, inside, tiny_factory):
    lm = tiny_factory(case)
    ids = torch.randint(0, 200, (2, 24))  # longer than the tiny sliding windows (8)
    before = lm.model.config._attn_implementation
    with torch.no_grad():
        eager = lm.model(input_ids=ids).logits
        with lm.adapter.training_attention():
            assert lm.model.config._attn_implementation == inside
            fast = lm.model(input_ids=ids).logits
    assert lm.model.config._attn_implementation == before  # measuring again
    torch.testing.assert_close(fast, eager, rtol=1e-4, atol=1e-4)
