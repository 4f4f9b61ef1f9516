"""Terminal tables (rich) with the headline numbers of an extremes result."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from rich.console import Console
from rich.table import Table

from .result import ExtremesResult


def _fmt(x, spec=".2f") -> str:
    return "-" if x is None or (isinstance(x, float) and not np.isfinite(x)) else format(x, spec)


def print_extremes(res: ExtremesResult, console: Console | None = None) -> None:
    if console is None:
        console = Console()
        if not console.is_terminal:  # piped / logged: rich would wrap the tables at 80 columns
            console = Console(width=140)
    m = res.model
    doms = ", ".join(f"{d['name']} ({d['prompts']} prompts, {d['tokens']} tok)" for d in res.domains)
    console.print(f"[bold]{m['name']}[/bold] ({m['family']}, {m['num_layers']} layers x {m['num_heads']} heads, "
                  f"{m['num_kv_heads']} KV heads); domains: {doms}")
    _sinks(res, console)
    if "resid_first" in res.per_prompt or "value_first" in res.per_prompt:
        _by_layer(res, console)
    if "dormancy" in res.parts:
        _dormancy(res, console)
    if res.interventions is not None:
        _interventions(res, console)


def _sinks(res: ExtremesResult, console: Console) -> None:
    s = res.summary()["sinks"]
    console.print(
        f"sink tokens: position 0 in {s['prompts_with_first_token_sink']}/{s['prompts']} prompts; "
        f"{100 * s['heads_sinking_on_first_token']:.0f}% of heads sink on position 0, "
        f"{100 * s['heads_sinking_elsewhere']:.0f}% on a later position (per prompt); "
        f"mean BOS mass {s['mean_bos_mass']:.3f}"
    )
    later = defaultdict(list)
    for p in res.prompts:
        for t in p["sink_tokens"]:
            if t["position"] > 0:
                later[t["token"]].append((t["heads"], t["position"]))
    if later:
        t = Table(title="Later sink tokens (position > 0)")
        for c in ("token", "prompts", "mean heads sinking", "positions"):
            t.add_column(c, justify="right" if c != "token" else "left")
        for tok, hits in sorted(later.items(), key=lambda kv: -len(kv[1])):
            t.add_row(repr(tok), str(len(hits)), f"{np.mean([h for h, _ in hits]):.0f}", ",".join(str(p) for _, p in hits[:8]))
        console.print(t)


def _signed3(x: float) -> str:
    """A signed activation with three significant digits: ``+0`` hid small dimensions' values."""
    return f"{x:+.0f}" if abs(x) >= 100 else f"{x:+.3g}"


def _by_layer(res: ExtremesResult, console: Console) -> None:
    pp = res.per_prompt
    t = Table(title="Residual-state peak and value-state drain (ratios: group / median of other tokens)")
    t.add_column("index", justify="right")
    has_res, has_val = "resid_first" in pp, "value_first" in pp
    if has_res:
        for c in ("|h| pos 0", "|h| others", "peak pos 0", "peak later", "top dims at pos 0 (dim:value)"):
            t.add_column(c, justify="right")
    if has_val:
        t.add_column("drain pos 0 (median head)", justify="right")
    L = res.model["num_layers"]
    first_n, other_n = res.residual_norms() if has_res else (None, None)
    rr, rl = (res.residual_ratio("first"), res.residual_ratio("later")) if has_res else (None, None)
    drain = np.nanmedian(res.drain_ratio("first"), axis=1) if has_val else None
    dims = (res.massive_dims or {}).get("first") or []
    for i in range(L + 1):
        row = [str(i)]
        if has_res:
            md = " ".join(f"{d['dim']}:{_signed3(d['signed'])}" for d in dims[i][:2]) if i < len(dims) else "-"
            row += [_fmt(first_n[i], ".1f"), _fmt(other_n[i], ".1f"), _fmt(rr[i]), _fmt(rl[i]), md]
        if has_val:
            row.append(_fmt(drain[i]) if i < L else "")
        t.add_row(*row)
    console.print(t)
    if has_val:
        console.print("(row i: residual stream entering block i — row 0 the embedding output, the last row after the last block — and the value states block i computes from it)")


def _dormancy(res: ExtremesResult, console: Console) -> None:
    counts = res.summary()["dormancy"]
    th = res.thresholds
    console.print(
        f"dormancy ({th.dormancy_metric} > {th.dormant_threshold} = dormant; domain-dependent needs spread > {th.margin}): "
        + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items())
    )
    rows = res.domain_dependent()[:12]
    if not rows:
        return
    t = Table(title=f"Strongest domain-dependent heads ({th.dormancy_metric} per domain; * dormant)")
    t.add_column("head")
    t.add_column("spread", justify="right")
    t.add_column("within-domain std", justify="right")
    for d in res.domain_names:
        t.add_column(d, justify="right")
    for r in rows:
        cells = [f"{r['values'][d]:.2f}{'*' if r['values'][d] > th.dormant_threshold else ''}" for d in res.domain_names]
        t.add_row(r["head"], f"{r['spread']:.2f}", _fmt(r.get("within_domain_std")), *cells)
    console.print(t)


def _interventions(res: ExtremesResult, console: Console) -> None:
    iv = res.interventions
    names = iv["domains"]
    thr = res.thresholds.dormant_threshold
    t = Table(title="Loss change per domain (nats/token); * = the head is dormant on that domain")
    for c in ("head", "role", "intervention"):
        t.add_column(c)
    for d in names:
        t.add_column(d, justify="right")
    t.add_row("(base loss)", "", "", *[f"{iv['base_loss'][d]:.3f}" for d in names])
    labels = {"zero": "zero output", "remove_sink": "remove sink attn"}
    for r in iv["heads"]:
        for k, kind in enumerate(iv["kinds"]):
            cells = [f"{r[kind][d]:+.3f}{'*' if r['activity'][d] > thr else ''}" for d in names]
            t.add_row(r["head"] if k == 0 else "", r["role"].replace("_", " ") if k == 0 else "", labels.get(kind, kind), *cells,
                      end_section=k == len(iv["kinds"]) - 1)
    console.print(t)
    for kind, s in iv["summary"].items():
        console.print(
            f"{labels.get(kind, kind)}: mean change where dormant {_fmt(s['mean_delta_dormant'], '+.4f')}, where active {_fmt(s['mean_delta_active'], '+.4f')}; "
            f"domain-dependent heads only: dormant {_fmt(s['dependent_mean_delta_dormant'], '+.4f')}, active {_fmt(s['dependent_mean_delta_active'], '+.4f')} "
            f"(larger where active for {s['dependent_heads_larger_when_active'] or '-'} heads); "
            f"Spearman(activity metric, change) {_fmt(s['spearman_activity_vs_delta'], '+.2f')} over {s['cells']} cells"
        )
