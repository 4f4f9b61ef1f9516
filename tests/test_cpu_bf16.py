"""bf16 products widened to fp32 agree with the native bf16 kernels up to bf16 rounding.

The native kernels here are whatever this CPU has (oneDNN with AMX, or the slow plain loop):
both accumulate in fp32 and round to bf16, so the widened results may differ by the rounding of
one bf16 ulp of the output and by nothing more.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from headsurgeon.models import cpu_bf16
from headsurgeon.models.cpu_bf16 import Bf16ByFp32, enable_for_bf16_on_this_cpu, enable_for_model


def _ulp_close(a: torch.Tensor, b: torch.Tensor, ulps: float = 2.0) -> bool:
    """Within ``ulps`` bf16 ulps of the larger magnitude (bf16 keeps 8 bits of mantissa)."""
    assert a.dtype == b.dtype == torch.bfloat16
    scale = torch.maximum(a.float().abs(), b.float().abs()).clamp_min(1e-3)
    return bool(((a.float() - b.float()).abs() <= ulps * scale * 2.0 ** -8).all())


def _products(x, w, bias, batch_a, batch_b):
    return {"mm": x @ w, "addmm": torch.addmm(bias, x, w), "bmm": torch.bmm(batch_a, batch_b),
            "baddbmm": torch.baddbmm(torch.ones(3, 5, 6, dtype=torch.bfloat16), batch_a, batch_b),
            "linear": F.linear(x, w.t().contiguous(), bias)}


def test_products_agree_with_native_bf16_and_stay_bf16():
    g = torch.Generator().manual_seed(0)
    args = [torch.randn(*s, generator=g).bfloat16() for s in ((16, 24), (24, 8), (8,), (3, 5, 7), (3, 7, 6))]
    native = _products(*args)
    with Bf16ByFp32():
        widened = _products(*args)
    for name in native:
        assert widened[name].dtype == torch.bfloat16, name
        assert _ulp_close(widened[name], native[name]), name


def test_gradients_of_a_linear_layer_agree_with_native_bf16():
    torch.manual_seed(1)
    layer = torch.nn.Linear(24, 16).bfloat16()
    x = torch.randn(4, 10, 24).bfloat16()

    def grads():
        layer.zero_grad()
        inp = x.clone().requires_grad_()
        layer(inp).square().sum().backward()
        return inp.grad, layer.weight.grad

    native = grads()
    with Bf16ByFp32():
        widened = grads()
    for n, w in zip(native, widened):
        assert w.dtype == torch.bfloat16
        assert _ulp_close(w, n, ulps=4)


def test_flash_attention_forward_and_backward_agree_with_native_bf16():
    torch.manual_seed(2)
    qkv = [torch.randn(2, 3, 16, 8).bfloat16() for _ in range(3)]

    def run():
        leaves = [t.clone().requires_grad_() for t in qkv]
        out = F.scaled_dot_product_attention(*leaves, is_causal=True)
        out.float().sum().backward()
        return out, *(t.grad for t in leaves)

    native = run()
    with Bf16ByFp32():
        widened = run()
    for n, w in zip(native, widened):
        assert w.dtype == torch.bfloat16
        # the native kernel rounds its probabilities to bf16 before the value product; the
        # widened one keeps them fp32: a few ulps, never a different answer
        assert (w.float() - n.float()).abs().max() <= 0.05 * n.float().abs().max()


def test_fp32_work_passes_through_bit_for_bit():
    torch.manual_seed(3)
    x, w = torch.randn(16, 24), torch.randn(24, 8)
    with Bf16ByFp32():
        inside = x @ w
    assert torch.equal(inside, x @ w) and inside.dtype == torch.float32


@pytest.mark.parametrize(("dtype", "device", "native"), [(torch.float32, "cpu", False), (torch.bfloat16, "cpu", True),
                                                       (torch.bfloat16, "meta", False)])
def test_not_turned_on_where_it_is_not_needed(monkeypatch, dtype, device, native):
    monkeypatch.setattr(cpu_bf16, "cpu_has_native_bf16", lambda: native)
    assert enable_for_bf16_on_this_cpu(dtype, device) is False
    assert not cpu_bf16.bf16_products_widened()


def test_turned_on_for_bf16_on_a_cpu_without_native_bf16_and_off_again(monkeypatch):
    from headsurgeon.surgery.manifest import environment_notes

    monkeypatch.setattr(cpu_bf16, "cpu_has_native_bf16", lambda: False)
    assert enable_for_bf16_on_this_cpu(torch.bfloat16, "cpu") is True
    try:
        assert cpu_bf16.bf16_products_widened()
        assert enable_for_bf16_on_this_cpu(torch.bfloat16, "cpu") is True  # idempotent
        a, b = torch.randn(4, 5).bfloat16(), torch.randn(5, 3).bfloat16()
        assert (a @ b).dtype == torch.bfloat16
        assert "widened" in environment_notes(bf16=True)["bf16_products"]  # bf16 runs say how they computed
        assert environment_notes(bf16=False) == {}  # an fp32 run's numbers are untouched by it
    finally:
        cpu_bf16.disable()
    assert not cpu_bf16.bf16_products_widened() and environment_notes(bf16=True) == {"bf16_products": "native"}


class _Recorder(torch.utils._python_dispatch.TorchDispatchMode):
    """Outside the widening mode: sees the ops the widening mode passes on, with their dtypes."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.seen.append((func.__name__, [a.dtype for a in args if isinstance(a, torch.Tensor)]))
        return func(*args, **(kwargs or {}))


def test_products_and_attention_really_run_in_fp32():
    x, w = torch.randn(6, 4).bfloat16(), torch.randn(4, 5).bfloat16()
    q = torch.randn(1, 2, 8, 4).bfloat16()
    with _Recorder() as rec, Bf16ByFp32():
        x @ w
        F.scaled_dot_product_attention(q, q, q, is_causal=True)
    products = [dts for name, dts in rec.seen if name.startswith("mm")]
    attention = [dts for name, dts in rec.seen if "flash_attention" in name]
    assert products == [[torch.float32, torch.float32]]
    assert attention and all(d == torch.float32 for dts in attention for d in dts)


#: aten ops that multiply matrices or attend: none may reach the CPU's own kernels with bf16
_PRODUCT_WORDS = ("mm", "matmul", "dot", "mv", "attention", "conv", "einsum", "linear")


def _slow_bf16_ops(seen) -> set[str]:
    return {name for name, dts in seen if any(w in name for w in _PRODUCT_WORDS) and torch.bfloat16 in dts}


@pytest.mark.parametrize("path", ["eager", "training attention", "measurement engine"])
def test_every_family_multiplies_nothing_in_bf16_under_the_mode(tiny, path):
    """Every product of a bf16 forward and backward -- eager attention, the SDPA training
    attention, the measurement engine's statistics -- is caught: none reaches a native kernel in
    bf16 (where it is the slow loop), whatever op the family's code dispatches to."""
    from contextlib import nullcontext

    from headsurgeon.diagnosis import collect_head_stats
    from headsurgeon.prompts import Prompt
    from headsurgeon.prompts.encoding import encode_prompts

    model = tiny.model.to(torch.bfloat16)
    ids = torch.randint(3, model.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    with _Recorder() as rec, Bf16ByFp32():
        if path == "measurement engine":
            enc = encode_prompts(tiny.tokenizer, [Prompt("a", "test", "one two three four"), Prompt("b", "test", "five six seven")])
            stats = collect_head_stats(tiny, enc, progress=False)
        else:
            model.train()
            with tiny.adapter.training_attention() if path == "training attention" else nullcontext():
                loss = model(input_ids=ids, labels=ids, use_cache=False).loss
            loss.backward()
    assert rec.seen, "the recorder saw nothing: the test would pass vacuously"
    assert not _slow_bf16_ops(rec.seen), f"{tiny.case}: bf16 products not widened: {sorted(_slow_bf16_ops(rec.seen))}"
    if path == "measurement engine":
        assert all(np.isfinite(v).all() for v in stats.values())
    else:
        assert torch.isfinite(loss) and all(p.grad is None or p.grad.dtype == torch.bfloat16 for p in model.parameters())


def test_the_product_check_catches_a_native_bf16_product():
    """The check above fails when a product is not widened (so a missed op would show)."""
    a = torch.randn(4, 5).bfloat16()
    with _Recorder() as rec:
        a @ a.t()
        torch.bmm(a[None], a.t()[None])
    assert _slow_bf16_ops(rec.seen) == {"mm.default", "bmm.default"}


def test_mixed_dtype_products_fail_as_natively():
    bias, x, w = torch.randn(3), torch.randn(2, 4).bfloat16(), torch.randn(4, 3).bfloat16()
    with pytest.raises(RuntimeError) as native:
        torch.addmm(bias, x, w)
    with Bf16ByFp32(), pytest.raises(RuntimeError) as widened:
        torch.addmm(bias, x, w)
    assert type(widened.value) is type(native.value)


def test_turned_on_for_a_bf16_model_and_for_bf16_autocast(monkeypatch, tiny_factory):
    from headsurgeon.surgery.manifest import environment_notes
    from headsurgeon.surgery.train import make_accelerator

    monkeypatch.setattr(cpu_bf16, "cpu_has_native_bf16", lambda: False)
    loaded = tiny_factory("llama-gqa")
    assert enable_for_model(loaded.model) is False  # fp32 weights: nothing to widen
    assert environment_notes(bf16=True) == {"bf16_products": "native"}
    assert enable_for_model(loaded.model.to(torch.bfloat16)) is True
    cpu_bf16.disable()
    make_accelerator("fp32")
    assert not cpu_bf16.bf16_products_widened()
    make_accelerator("bf16")  # fp32 weights, bf16 autocast: its products are bf16 too
    assert cpu_bf16.bf16_products_widened()
    assert "widened" in environment_notes(bf16=True)["bf16_products"]


def test_a_wrapped_bf16_model_turns_it_on(monkeypatch, tiny_factory):
    from headsurgeon.models import wrap_model

    monkeypatch.setattr(cpu_bf16, "cpu_has_native_bf16", lambda: False)
    loaded = tiny_factory("llama-gqa")
    wrap_model(loaded.model.to(torch.bfloat16), loaded.tokenizer)
    assert cpu_bf16.bf16_products_widened()


def test_not_turned_off_from_under_another_mode(monkeypatch):
    monkeypatch.setattr(cpu_bf16, "cpu_has_native_bf16", lambda: False)
    enable_for_bf16_on_this_cpu(torch.bfloat16, "cpu")
    with _Recorder():
        with pytest.raises(RuntimeError, match="another dispatch mode"):
            cpu_bf16.disable()
        assert cpu_bf16.bf16_products_widened()
    cpu_bf16.disable()
    assert not cpu_bf16.bf16_products_widened()


def test_every_family_bf16_loss_agrees_with_native(tiny):
    """Widened and native bf16 give the same loss up to bf16 rounding, in every family (MoE
    grouped products and ALiBi included)."""
    model = tiny.model.to(torch.bfloat16)
    ids = torch.randint(3, model.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        native = model(input_ids=ids, labels=ids, use_cache=False).loss.float()
        with Bf16ByFp32():
            widened = model(input_ids=ids, labels=ids, use_cache=False).loss.float()
    assert abs(widened - native) <= 0.02 * abs(native), (tiny.case, native.item(), widened.item())
