"""Per-query-row attention statistics, computed exactly without holding a T x T map.

For one head, query row ``t`` and scores ``s_tj`` (scaled dot products plus whatever the layer
adds: mask, ALiBi bias, soft-cap), with ``L_t = logsumexp_j s_tj`` and ``p_tj = exp(s_tj - L_t)``:

* weight on position 0 (BOS):  ``p_t0 = exp(s_t0 - L_t)``;
* entropy:                     ``H_t = -sum_j p_tj log p_tj = L_t - sum_j p_tj s_tj``;
* local mass:                  ``p_tt + p_t,t-1 + p_t,t-2`` (three diagonal scores);
* attention *received* by key ``j`` (for the sink study): ``sum_t w_t p_tj`` over chosen queries;
* with a learned sink logit ``z_h`` (gpt-oss) the softmax runs over the real keys *and* ``z_h``:
  ``L_t`` includes it, the real keys' ``p_tj`` sum to ``1 - sink_t`` with ``sink_t = exp(z_h - L_t)``,
  and the entropy is that of the whole distribution, the sink one more outcome.

Three ways to get them, all returning the same :class:`RowStats`:

* :func:`fused_row_stats` — one call of PyTorch's CPU flash-attention kernel per sequence, which
  returns ``L_t`` next to the output. ``sum_j p_tj s_tj = scale * q_t . (sum_j p_tj k_j)`` is
  attention with K as the values, so K is concatenated to V and both come out of the same call;
  the kernel wants one head size for Q, K and V, so the queries are zero-padded to it and
  ``[k | v]`` serves as keys *and* values (exact: the zero half of the queries adds ``0`` to
  every dot product, and ``scale`` is passed explicitly). The layer's output is the V part of
  that same call. Nothing of size T x T exists.
* :func:`chunked_row_stats` — explicit scores for ``chunk`` query rows at a time (memory
  ``O(chunk x T)``): any score modification (soft-capping, ALiBi, float masks), any device, and
  the only route to attention received per key.
* :func:`rows_from_maps` — from full probability maps (the eager reference the tests compare with).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

#: Width of the local band: the query itself and the two keys before it (``SCIENCE.md``).
LOCAL_WIDTH = 3


@dataclass
class RowStats:
    """``[batch, heads, T]`` per-query-row statistics of one layer (float32).

    ``received`` (``[batch, heads, T]``, per *key*) is present only when it was asked for.
    Rows of padded query positions carry no meaning.
    """

    bos: torch.Tensor
    entropy: torch.Tensor
    local: torch.Tensor
    received: torch.Tensor | None = None
    #: ``[batch, heads, T]`` share of each row taken by a learned sink logit (gpt-oss); else None.
    sink: torch.Tensor | None = None


def repeat_kv(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``[B, kv_heads, T, d] -> [B, heads, T, d]``: query head h reads KV head ``h // (heads / kv_heads)``."""
    n = heads // x.shape[1]
    return x if n == 1 else x.repeat_interleave(n, dim=1)


def _diagonal_scores(q: torch.Tensor, k: torch.Tensor, scale: float, offset: int) -> torch.Tensor:
    """``[B, H, T]``: ``scale * q_t . k_{t-offset}`` (``-inf`` where ``t < offset``), float32."""
    T = q.shape[-2]
    out = torch.full(q.shape[:-1], float("-inf"), dtype=torch.float32, device=q.device)
    if offset < T:
        out[..., offset:] = scale * (q[..., offset:, :].float() * k[..., : T - offset, :].float()).sum(-1)
    return out


def _mask_at(mask: torch.Tensor | None, offset: int, T: int) -> torch.Tensor | None:
    """``[B, 1|H, T]`` additive mask values at ``(t, t - offset)``; ``None`` without a mask."""
    if mask is None:
        return None
    diag = mask.diagonal(offset=-offset, dim1=-2, dim2=-1).float()  # [B, h, T - offset]
    return F.pad(diag, (offset, 0), value=float("-inf"))


def additive_mask(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """A boolean keep-mask as an additive float mask of ``dtype`` (0 kept, the dtype's minimum
    hidden: a row with nothing visible stays finite, as in transformers' eager masks)."""
    if mask is None or mask.dtype != torch.bool:
        return mask
    zero = torch.zeros((), dtype=dtype, device=mask.device)
    return torch.where(mask, zero, torch.finfo(dtype).min)


def fused_row_stats(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    scale: float,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, RowStats]:
    """Attention output ``[B, H, T, dv]`` and :class:`RowStats` from the CPU flash kernel.

    ``query [B, H, T, d]``, ``key``/``value [B, kv_heads, T, d|dv]`` (grouped-query attention is
    expanded here). ``mask``: ``None`` for plain causal attention, or a boolean keep-mask /
    0-or-minimum float mask broadcastable to ``[B, H, T, T]`` (padding, sliding windows). A mask
    with other finite values (a positional bias) is not this route's business: use
    :func:`chunked_row_stats`.

    One kernel call per sequence, with keys and values both ``[k | v]`` and queries ``[q | 0]``:
    the zero half of the queries makes every score ``q . k`` exactly, and the output is
    ``[sum_j p_tj k_j | sum_j p_tj v_j]``, the expected key and the layer's output at once. One
    sequence at a time keeps the temporaries small (about a tenth of an SDPA forward's
    activations for SmolLM2 at 8 x 512) and, on CPU, runs faster than one call on the batch.
    The output is returned as a transposed view of a ``[B, T, H, dv]`` tensor, the layout the
    attention interface hands back.
    """
    B, H, T, d = query.shape
    KV, dv = key.shape[1], value.shape[-1]
    n, width = H // KV, d + dv
    float_mask = additive_mask(mask, query.dtype)
    out = torch.empty(B, T, H, dv, dtype=query.dtype, device=query.device)
    bos = torch.empty(B, H, T, dtype=torch.float32, device=query.device)
    entropy, local = torch.empty_like(bos), torch.empty_like(bos)
    for b in range(B):
        q = query[b : b + 1]
        qp = q.new_zeros(1, H, T, width)
        qp[..., :d] = q
        kv = q.new_empty(1, KV, n, T, width)  # query head h reads KV head h // n (grouped-query attention)
        kv[..., :d] = key[b : b + 1, :, None]
        kv[..., d:] = value[b : b + 1, :, None]
        kv = kv.view(1, H, T, width)
        m = None if float_mask is None else float_mask[b : b + 1] if float_mask.shape[0] > 1 else float_mask
        o, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(qp, kv, kv, 0.0, m is None, attn_mask=m, scale=scale)
        out[b] = o[0, :, :, d:].transpose(0, 1)
        lse = lse.float()  # [1, H, T]
        k = kv[..., :d]
        qf = q.float()
        expected_score = scale * (qf * o[..., :d].float()).sum(-1)  # sum_j p_tj s_tj (the mask adds 0 where p > 0)
        first = scale * (qf @ k[..., 0, :].float().unsqueeze(-1)).squeeze(-1)  # s_t0
        m0 = 0 if m is None else m[..., :, 0].float()
        bos[b] = torch.exp(first + m0 - lse)[0]
        entropy[b] = (lse - expected_score)[0]
        band = torch.zeros_like(lse)
        for offset in range(min(LOCAL_WIDTH, T)):
            diag = _diagonal_scores(q, k, scale, offset)
            md = _mask_at(m, offset, T)
            band += torch.exp(diag + (0 if md is None else md) - lse)
        local[b] = band[0]
    return out.transpose(1, 2), RowStats(bos=bos, entropy=entropy, local=local)


def _scores(
    q_rows: torch.Tensor,
    k: torch.Tensor,
    rows: torch.Tensor,
    *,
    scale: float,
    mask: torch.Tensor | None,
    key_bias: torch.Tensor | None,
    softcap: float | None,
) -> torch.Tensor:
    """``[B, H, r, T]`` float32 scores of query rows ``rows`` (positions) against every key."""
    s = scale * (q_rows.float() @ k.float().transpose(-1, -2))
    if softcap is not None:  # Gemma-2 style: cap * tanh(s / cap), before the mask
        s = softcap * torch.tanh(s / softcap)
    T = k.shape[-2]
    j = torch.arange(T, device=k.device)
    if key_bias is not None and key_bias.ndim == 2:  # [H, T]: a bias per key position, as given
        s = s + key_bias.to(s.device, torch.float32)[None, :, None, :T]
    elif key_bias is not None:  # ALiBi as BLOOM adds it: slope_h * key position (row-constant shifts cancel)
        s = s + key_bias.to(s.device, torch.float32)[None, :, None, None] * j.float()
    if mask is None:
        s = s.masked_fill(j[None, :] > rows[:, None], float("-inf"))
    elif mask.dtype == torch.bool:
        s = s.masked_fill(~mask[..., rows, :], float("-inf"))
    else:
        s = s + mask[..., rows, :].float()
    return s


def chunked_row_stats(
    query: torch.Tensor,
    key: torch.Tensor,
    *,
    scale: float,
    mask: torch.Tensor | None = None,
    key_bias: torch.Tensor | None = None,
    softcap: float | None = None,
    received_weights: torch.Tensor | None = None,
    chunk: int | None = None,
    rows: torch.Tensor | None = None,
    sink_logits: torch.Tensor | None = None,
) -> RowStats:
    """Exact :class:`RowStats` from explicit scores, ``chunk`` query rows at a time.

    ``query [B, H, T, d]``, ``key [B, kv_heads, T, d]``. ``mask``: ``None`` (causal), a boolean
    keep-mask or an additive float mask broadcastable to ``[B, H, T, T]``. ``key_bias [H]``: a
    per-head slope times the key position added to every score (ALiBi); ``[H, T]``: a bias per
    key position, added as given. ``softcap``: scores
    become ``softcap * tanh(s / softcap)``. ``received_weights [B, T]``: when given, also the
    attention each key receives, summed over query rows weighted by it. ``chunk``: rows per step
    (default: about 4M scores per step). ``rows``: compute only these query positions (the
    result then has ``len(rows)`` in place of T; used by the spot checks). ``sink_logits [H]``:
    a learned per-head logit every row's softmax also runs over (gpt-oss's ``sinks``).
    """
    B, H, T, _ = query.shape
    k = repeat_kv(key, H)
    positions = torch.arange(T, device=query.device) if rows is None else rows.to(query.device)
    R = len(positions)
    if chunk is None:
        chunk = max(1, (1 << 22) // max(1, B * H * T))
    bos = torch.empty(B, H, R, dtype=torch.float32, device=query.device)
    entropy, local = torch.empty_like(bos), torch.empty_like(bos)
    received = None if received_weights is None else torch.zeros(B, H, T, dtype=torch.float32, device=query.device)
    sink = None if sink_logits is None else torch.empty_like(bos)
    for start in range(0, R, chunk):
        pos = positions[start : start + chunk]
        s = _scores(query[:, :, pos], k, pos, scale=scale, mask=mask, key_bias=key_bias, softcap=softcap)
        if sink_logits is not None:  # one more outcome per row: the head's sink logit
            z = sink_logits.to(s.device, torch.float32)[None, :, None, None].expand(*s.shape[:-1], 1)
            full = torch.softmax(torch.cat([s, z], dim=-1), dim=-1)
            p, share = full[..., :-1], full[..., -1]
            sink[..., start : start + len(pos)] = share
            entropy[..., start : start + len(pos)] = -torch.special.xlogy(full, full).sum(-1)
        else:
            p = torch.softmax(s, dim=-1)  # [B, H, r, T]
            entropy[..., start : start + len(pos)] = -torch.special.xlogy(p, p).sum(-1)
        bos[..., start : start + len(pos)] = p[..., 0]
        band = torch.zeros_like(p[..., 0])
        for offset in range(LOCAL_WIDTH):
            col = pos - offset
            ok = col >= 0
            idx = col.clamp_min(0).view(1, 1, -1, 1).expand(B, H, -1, 1)
            band += torch.where(ok, p.gather(-1, idx).squeeze(-1), 0.0)
        local[..., start : start + len(pos)] = band
        if received is not None:
            w = received_weights.to(p)[:, pos]  # [B, r]
            received += (p * w[:, None, :, None]).sum(-2)
    return RowStats(bos=bos, entropy=entropy, local=local, received=received, sink=sink)


def rows_from_maps(weights: torch.Tensor, sink: torch.Tensor | None = None) -> RowStats:
    """:class:`RowStats` of full ``[B, H, T, T]`` probability maps (the eager reference);
    ``sink [B, H, T]``: a learned sink's share of each row (the real keys' weights sum to 1 minus it)."""
    w = weights.float()
    T = w.shape[-1]
    local = torch.zeros(w.shape[:-1], dtype=w.dtype, device=w.device)
    for offset in range(min(LOCAL_WIDTH, T)):
        local[..., offset:] += w.diagonal(offset=-offset, dim1=-2, dim2=-1)  # A[t, t-offset]
    entropy = -torch.special.xlogy(w, w).sum(-1)
    if sink is not None:
        sink = sink.float()
        entropy = entropy - torch.special.xlogy(sink, sink)
    return RowStats(bos=w[..., 0], entropy=entropy, local=local, sink=sink)
