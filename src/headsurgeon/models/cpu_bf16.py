"""bf16 matrix products on CPUs without native bf16 units: widened to fp32, rounded back.

Why this exists: PyTorch multiplies bf16 matrices on an x86 CPU with oneDNN only when the CPU
has AVX-512 bf16 or AMX. On an AVX2-only CPU (many AMD EPYC machines, for one) it falls back to
a plain loop: a 1024x576 @ 576x1536 product took 1.50 s in bf16 against 0.036 s in fp32 on such
a machine, and a SmolLM2 surgical step went from 1.9 s (on an AMX machine) to about 160 s. A
bf16 study started on one machine could then not be continued on the next.

oneDNN's bf16 product widens its inputs, accumulates in fp32 and rounds the result to bf16.
:class:`Bf16ByFp32` does exactly that with an fp32 product (bf16 -> fp32 is exact), so the
numbers agree with a native bf16 product up to the order of the fp32 sums -- which differs
between CPUs (and thread counts) anyway. The flash-attention CPU kernel multiplies bf16 blocks
the same slow way, so its forward and backward run in fp32 too and round their outputs to bf16
(its probabilities stay fp32 inside, a little more precise than the native bf16 kernel).

It is a :class:`~torch.utils._python_dispatch.TorchDispatchMode`: below autograd and autocast,
so backward products and autocast's bf16 products are caught as well, and every other op passes
through untouched. :func:`enable_for_bf16_on_this_cpu` turns it on for the rest of the session
when bf16 work is set up on a CPU that needs it -- a bf16 model loaded or wrapped there
(:func:`enable_for_model`), a streamed bf16 model, a bf16 autocast training step or perplexity
(the model outlives any ``with`` block around its loading); on a CPU with native bf16, or for a
model with any weight on an accelerator, it does nothing. Dispatch modes live in torch's
thread-local state (autograd carries them into its backward threads): "the session" is the
thread that turned it on, which for the CLI and a notebook is the only one.

Cost: each widened product makes a temporary fp32 copy of its bf16 operands, at most the largest
weight matrix (the output head) at twice its bf16 size, alive for the one product.
"""

from __future__ import annotations

import functools

import torch
from torch.utils._python_dispatch import TorchDispatchMode, _get_current_dispatch_mode

_aten = torch.ops.aten
#: Products whose every tensor argument is widened; the result is rounded back to bf16.
_PRODUCTS = {_aten.mm.default, _aten.addmm.default, _aten.bmm.default, _aten.baddbmm.default,
             _aten._grouped_mm.default}  # the last: mixture-of-experts layers (gpt-oss)
#: Flash attention on CPU: outputs that were bf16 in are rounded back (logsumexp stays fp32).
_ATTENTION = {_aten._scaled_dot_product_flash_attention_for_cpu.default,
              _aten._scaled_dot_product_flash_attention_for_cpu_backward.default}

_enabled: Bf16ByFp32 | None = None


def _is_cpu_bf16(x) -> bool:
    return isinstance(x, torch.Tensor) and x.dtype == torch.bfloat16 and x.device.type == "cpu"


def _widen(x):
    return x.float() if _is_cpu_bf16(x) else x


def _wants_widening(func, args, kwargs) -> bool:
    """A product whose every floating-point operand is CPU bf16 (mixed dtypes are left to fail as
    natively), or flash attention whose first tensor (the queries; in backward the output gradient) is CPU
    bf16 (its backward also takes the fp32 logsumexp)."""
    if func in _ATTENTION:
        return bool(args) and _is_cpu_bf16(args[0])
    floating = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor) and a.is_floating_point()]
    return bool(floating) and all(_is_cpu_bf16(t) for t in floating)


class Bf16ByFp32(TorchDispatchMode):
    """Run CPU bf16 products (and flash attention) in fp32 and round their results to bf16."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _PRODUCTS or func in _ATTENTION:
            if _wants_widening(func, args, kwargs):
                wide_args = [_widen(a) for a in args]
                wide_kwargs = {k: _widen(v) for k, v in kwargs.items()}
                if func in _PRODUCTS:
                    return func(*wide_args, **wide_kwargs).to(torch.bfloat16)
                out = func(*wide_args, **wide_kwargs)
                if func is _aten._scaled_dot_product_flash_attention_for_cpu.default:
                    return (out[0].to(torch.bfloat16), *out[1:])  # (output, logsumexp)
                return tuple(g.to(torch.bfloat16) for g in out)  # grads of q, k, v: bf16 like their inputs
        return func(*args, **kwargs)


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (oneDNN with AVX-512 bf16 / AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN: assume the slow path
        return False


def enable_for_bf16_on_this_cpu(dtype: torch.dtype, device: torch.device | str) -> bool:
    """Turn :class:`Bf16ByFp32` on for the rest of the session if bf16 work on ``device`` needs
    it (a CPU without native bf16). Returns whether it is on. Idempotent."""
    global _enabled
    if _enabled is not None:
        return True
    if dtype != torch.bfloat16 or torch.device(device).type != "cpu" or cpu_has_native_bf16():
        return False
    _enabled = Bf16ByFp32()
    _enabled.__enter__()
    return True


def enable_for_model(model: torch.nn.Module) -> bool:
    """:func:`enable_for_bf16_on_this_cpu` for a model as placed: on when it holds bf16 weights on
    the CPU and none on an accelerator (a model spread over GPUs computes there, so no Python mode
    may slow its every op; weights offloaded to disk count as CPU). Returns whether it is on."""
    devices, bf16_on_cpu = set(), False
    for p in model.parameters():
        devices.add(p.device.type)
        bf16_on_cpu = bf16_on_cpu or (p.dtype == torch.bfloat16 and p.device.type == "cpu")
    if not bf16_on_cpu or devices - {"cpu", "meta"}:
        return _enabled is not None
    return enable_for_bf16_on_this_cpu(torch.bfloat16, "cpu")


def disable() -> None:
    """Turn the mode off again (tests, and a notebook that wants native products).

    Refused while another dispatch mode was entered after it: leaving it then would pop that one.
    """
    global _enabled
    if _enabled is not None:
        if _get_current_dispatch_mode() is not _enabled:
            raise RuntimeError("cannot turn off the bf16 widening while another dispatch mode is active above it; leave that one first")
        _enabled.__exit__(None, None, None)
        _enabled = None


def bf16_products_widened() -> bool:
    """Whether this session computes its CPU bf16 products in fp32 (recorded in run manifests)."""
    return _enabled is not None


__all__ = ["Bf16ByFp32", "bf16_products_widened", "cpu_has_native_bf16", "disable", "enable_for_bf16_on_this_cpu", "enable_for_model"]
