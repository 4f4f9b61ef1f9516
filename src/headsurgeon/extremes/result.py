"""The extreme-token result: a plain object that round-trips through versioned JSON.

JSON layout (``kind: "extremes"``): ``schema_version``, ``package_version``, ``created``,
``elapsed_seconds``, ``model``; ``settings`` (the :class:`ExtremesSettings` thresholds) and
``options`` (parts run, BOS policy, max length, batch size, local text per domain);
``domains`` (name, sources, prompts, tokens); ``prompts`` (name, domain, tokens, first token and
``sink_tokens``: position, token, heads sinking on it, mean attention it receives);
``per_prompt`` arrays (``[prompt][layer][head]``: ``bos_mass``, ``sink_share``, ``sinks_first``,
``sinks_elsewhere``, ``value_first``, ``value_later``, ``value_other`` — value-state norms of
the token groups of :mod:`.analysis`; ``[prompt][index]`` with index 0 = input of block 0 and
i = output of block i-1: ``resid_first``, ``resid_later``, ``resid_other``, ``median_abs``);
``massive_dims`` (``{"first"|"later": per residual index}``, see
:func:`.analysis.massive_dims`); ``interventions``
(see :func:`.effects.run_interventions`); and the derived, documented-for-readers sections
``summary``, ``drain``, ``peak`` and ``dormancy`` (recomputed from the above on load, never read).
Missing values (a prompt without sink tokens) are ``null``.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.io import atomic_write_text, envelope, now_iso, read_document

from .analysis import GROUPS
from .dormancy import classify_dormancy, count_dormancy, domain_dependent_heads
from .settings import ExtremesSettings


def _nanmean(x, axis=0) -> np.ndarray:
    """Mean ignoring NaN (prompts without sink tokens); NaN where nothing is left, silently."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.asarray(x, dtype=float), axis=axis)


def _json(a) -> list:
    a = np.round(np.asarray(a, dtype=float), 6)
    return np.where(np.isnan(a), None, a).tolist()


def _array(v) -> np.ndarray:
    return np.array(v, dtype=float)  # None -> nan


@dataclass
class ExtremesResult:
    """Sinks, drains, peaks, dormancy and interventions of one model over several domains."""

    model: dict
    settings: dict
    options: dict
    domains: list[dict]
    prompts: list[dict]
    per_prompt: dict[str, np.ndarray]
    massive_dims: list[list[dict]] | None = None
    interventions: dict | None = None
    created: str = field(default_factory=now_iso)
    elapsed_seconds: float | None = None

    # ----- views ----------------------------------------------------------------------------
    @property
    def parts(self) -> list[str]:
        return list(self.options["parts"])

    @property
    def thresholds(self) -> ExtremesSettings:
        return ExtremesSettings.from_dict(self.settings)

    @property
    def domain_names(self) -> list[str]:
        return [d["name"] for d in self.domains]

    def drain_ratio(self, group: str = "first") -> np.ndarray:
        """``[L, H]``: value norm at ``group`` (``first`` = position 0, ``later`` = later sink
        tokens) over the median at the other tokens, mean over prompts."""
        return _nanmean(self.per_prompt[f"value_{group}"] / self.per_prompt["value_other"])

    def value_norms(self, group: str = "first") -> tuple[np.ndarray, np.ndarray]:
        """``[L]`` value norms of ``group`` and of the other tokens, averaged over heads and prompts."""
        pp = self.per_prompt
        return _nanmean(_nanmean(pp[f"value_{group}"], 2)), _nanmean(_nanmean(pp["value_other"], 2))

    def residual_ratio(self, group: str = "first") -> np.ndarray:
        """``[L+1]``: residual norm at ``group`` over the median at the other tokens, mean over prompts."""
        return _nanmean(self.per_prompt[f"resid_{group}"] / self.per_prompt["resid_other"])

    def residual_norms(self, group: str = "first") -> tuple[np.ndarray, np.ndarray]:
        """``[L+1]`` residual norms of ``group`` and (median) of the other tokens, mean over prompts."""
        return _nanmean(self.per_prompt[f"resid_{group}"]), _nanmean(self.per_prompt["resid_other"])

    def domain_metric(self, metric: str | None = None) -> np.ndarray:
        """``[domains, L, H]``: mean over each domain's prompts of ``bos_mass`` or ``sink_share``."""
        metric = metric or self.thresholds.dormancy_metric
        doms = np.array([p["domain"] for p in self.prompts])
        return np.stack([self.per_prompt[metric][doms == d].mean(0) for d in self.domain_names])

    def domain_std(self, metric: str | None = None) -> np.ndarray:
        """``[domains, L, H]``: spread (std) of the metric over each domain's prompts (NaN if < 2)."""
        metric = metric or self.thresholds.dormancy_metric
        doms = np.array([p["domain"] for p in self.prompts])
        x = self.per_prompt[metric]
        return np.stack([x[doms == d].std(0, ddof=1) if (doms == d).sum() > 1 else np.full(x.shape[1:], np.nan) for d in self.domain_names])

    def dormancy_classes(self) -> np.ndarray:
        t = self.thresholds
        return classify_dormancy(self.domain_metric(), threshold=t.dormant_threshold, margin=t.margin)

    def domain_dependent(self) -> list[dict]:
        return domain_dependent_heads(self.domain_metric(), self.dormancy_classes(), self.domain_names,
                                      threshold=self.thresholds.dormant_threshold, within=self.domain_std())

    def sink_token_table(self) -> dict:
        """How often position 0 is a sink token, and which later tokens are (token -> prompts)."""
        first = sum(any(s["position"] == 0 for s in p["sink_tokens"]) for p in self.prompts)
        later = Counter(s["token"] for p in self.prompts for s in p["sink_tokens"] if s["position"] > 0)
        return {
            "prompts": len(self.prompts),
            "prompts_with_first_token_sink": first,
            "prompts_without_sink_tokens": sum(not p["sink_tokens"] for p in self.prompts),
            "later_sink_tokens": dict(later.most_common()),
        }

    def summary(self) -> dict:
        pp = self.per_prompt
        out: dict = {
            "sinks": {
                **self.sink_token_table(),
                "heads_sinking_on_first_token": round(float(pp["sinks_first"].mean()), 4),
                "heads_sinking_elsewhere": round(float(pp["sinks_elsewhere"].mean()), 4),
                "mean_bos_mass": round(float(pp["bos_mass"].mean()), 4),
            }
        }
        if "value_first" in pp:
            out["drain"] = {g: _ratio_summary(self.drain_ratio(g), per_layer=False) for g in GROUPS}
        if "resid_first" in pp:
            out["peak"] = {g: _ratio_summary(self.residual_ratio(g), per_layer=True) for g in GROUPS}
        if "dormancy" in self.parts:
            out["dormancy"] = count_dormancy(self.dormancy_classes())
        return out

    # ----- JSON -----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        doc = {
            **envelope("extremes", created=self.created),
            "elapsed_seconds": self.elapsed_seconds,
            "model": self.model,
            "settings": self.settings,
            "options": self.options,
            "domains": self.domains,
            "prompts": self.prompts,
            "summary": self.summary(),
        }
        if "value_first" in self.per_prompt:
            doc["drain"] = {g: {"ratio": _json(self.drain_ratio(g)), "norm_by_layer": _json(self.value_norms(g)[0])} for g in GROUPS}
            doc["drain"]["other_norm_by_layer"] = _json(self.value_norms()[1])
        if "resid_first" in self.per_prompt:
            doc["peak"] = {g: {"ratio": _json(self.residual_ratio(g)), "norm": _json(self.residual_norms(g)[0])} for g in GROUPS}
            doc["peak"]["other_norm"] = _json(self.residual_norms()[1])
            doc["peak"]["median_abs"] = _json(_nanmean(self.per_prompt["median_abs"]))
        if "dormancy" in self.parts:
            t = self.thresholds
            doc["dormancy"] = {
                "metric": t.dormancy_metric, "threshold": t.dormant_threshold, "margin": t.margin,
                "classes": self.dormancy_classes().tolist(),
                "bos_mass_by_domain": _json(self.domain_metric("bos_mass")),
                "sink_share_by_domain": _json(self.domain_metric("sink_share")),
                "domain_dependent": self.domain_dependent(),
            }
        doc["massive_dims"] = self.massive_dims
        doc["interventions"] = self.interventions
        doc["per_prompt"] = {k: _json(v) for k, v in self.per_prompt.items()}
        return doc

    @classmethod
    def from_dict(cls, doc: dict) -> ExtremesResult:
        if doc.get("kind") != "extremes":
            raise HeadsurgeonError(f"this JSON is a '{doc.get('kind')}' document, not an extremes result; pass an extremes.json")
        return cls(
            model=doc["model"], settings=doc["settings"], options=doc["options"], domains=doc["domains"],
            prompts=doc["prompts"], per_prompt={k: _array(v) for k, v in doc["per_prompt"].items()},
            massive_dims=doc.get("massive_dims"), interventions=doc.get("interventions"),
            created=doc.get("created", ""), elapsed_seconds=doc.get("elapsed_seconds"),
        )

    def save(self, path: str | Path) -> Path:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> ExtremesResult:
        return cls.from_dict(read_document(path, kind="extremes"))


def _r(x) -> float | None:
    return None if x is None or np.isnan(x) else round(float(x), 4)


def _ratio_summary(ratio: np.ndarray, *, per_layer: bool) -> dict | None:
    """Headline numbers of a ratio array (``None`` when no prompt had the group)."""
    if np.all(np.isnan(ratio)):
        return None
    if per_layer:
        return {"max": _r(np.nanmax(ratio)), "at_index": int(np.nanargmax(ratio)), "by_index": [_r(x) for x in ratio]}
    return {"median": _r(np.nanmedian(ratio)), "min": _r(np.nanmin(ratio)), "heads_below_0.5": int((ratio < 0.5).sum()), "heads": int((~np.isnan(ratio)).sum())}
