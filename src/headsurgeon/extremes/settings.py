"""Every threshold of the extreme-token study in one flat, typed, JSON-saved dataclass.

The numbers that decide what counts as a sink, a dormant head or a domain-dependent head are
choices, not facts; they live here (saved beside every result) so a reader can see and change
them, and nothing in the implementation hard-codes them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.options import check_fields, option

#: The parts of the study ``run_extremes(what=...)`` / ``--only`` can select.
PARTS = ("sinks", "drain", "peak", "dormancy", "interventions")
#: Per-head activity measures the dormancy classification can use.
DORMANCY_METRICS = ("bos_mass", "sink_share")


@dataclass(frozen=True)
class ExtremesSettings:
    """Thresholds and sizes of the study (defaults in brackets).

    sink_threshold [0.3]: key position j is a sink *of a head* when the mean attention it
        receives from the queries that can see it (t >= j, query 0 excluded) exceeds this.
        Uniform attention over T keys gives about ln(T)/T (0.03 at T = 128), so 0.3 is ~10x that.
    min_visible_queries [4]: ignore key positions seen by fewer queries (the last few tokens of a
        prompt would otherwise look like sinks of any head that attends to itself).
    sink_head_fraction [0.1]: a position is a *sink token of the prompt* when at least this
        fraction of all heads (layers x heads) sink on it. Drain and peak compare these tokens
        with the others.
    dormant_threshold [0.5]: a head is dormant on a domain when its activity metric (mean over
        the domain's prompts) exceeds this. Same 0.5 as the BOS-sink class of the diagnosis.
    dormancy_metric ["bos_mass"]: ``bos_mass`` (attention on position 0) or ``sink_share``
        (attention on all of the prompt's sink tokens).
    margin [0.3]: a head is domain-dependent when it is dormant on at least one domain, active
        on at least one, and the metric's max - min over domains exceeds this margin. Heads that
        cross the threshold with a smaller spread are reported as ``borderline``.
    top_k_dims [8]: hidden dimensions with the largest |value| kept per token and layer (the
        candidates for massive-activation dimensions).
    report_dims [3]: massive dimensions reported per layer.
    intervention_domain_dependent [3], intervention_controls [1]: heads intervened on by
        default: the strongest domain-dependent heads plus this many always-dormant and
        always-active controls each.
    intervention_prompts [1]: prompts per domain used for the intervention losses. Each head
        costs two full forward passes over them (the measurement uses all prompts once), so
        this and the number of heads set the run time; raise both on a faster machine.
    """

    sink_threshold: float = option(0.3, "a key position is a sink of a head when the mean attention it receives exceeds this", above=0, below=1,
                                   flag="--key-sink-threshold")
    min_visible_queries: int = option(4, "ignore key positions seen by fewer queries", integer=True, min=1)
    sink_head_fraction: float = option(0.1, "a position is a sink token of the prompt when at least this fraction of all heads sink on it", above=0, below=1)
    dormant_threshold: float = option(0.5, "a head is dormant on a domain when its metric (mean over the domain) exceeds this", above=0, below=1)
    dormancy_metric: str = option("bos_mass", "bos_mass (attention on position 0) or sink_share (attention on the prompt's sink tokens)", choices=DORMANCY_METRICS)
    margin: float = option(0.3, "domain-dependent needs max - min of the metric over domains above this", above=0, below=1)
    top_k_dims: int = option(8, "hidden dimensions with the largest |value| kept per token and layer", integer=True, min=1)
    report_dims: int = option(3, "massive dimensions reported per layer", integer=True, min=1)
    intervention_domain_dependent: int = option(3, "default interventions: this many strongest domain-dependent heads", integer=True, min=0, flag="--intervention-heads")
    intervention_controls: int = option(1, "plus this many always-dormant and always-active control heads each", integer=True, min=0, flag="--controls")
    intervention_prompts: int = option(1, "prompts per domain used for intervention losses", integer=True, min=1)

    def __post_init__(self):
        check_fields(self)
        if self.report_dims > self.top_k_dims:
            raise HeadsurgeonError(f"report-dims ({self.report_dims}) cannot exceed top-k-dims ({self.top_k_dims}); raise --top-k-dims")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict) -> ExtremesSettings:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in known})


def normalise_parts(what) -> tuple[str, ...]:
    """Validate ``what`` and return it in canonical order. ``sinks`` is always included: the
    other parts are defined relative to the sink tokens it finds."""
    if isinstance(what, str):
        what = [w for w in what.split(",") if w.strip()]
    chosen = {w.strip() for w in what}
    unknown = chosen - set(PARTS)
    if unknown:
        raise HeadsurgeonError(f"unknown part(s) {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    if not chosen:
        raise HeadsurgeonError(f"nothing selected; choose at least one of {', '.join(PARTS)}")
    chosen.add("sinks")
    if "interventions" in chosen:
        chosen.add("dormancy")  # the default heads come from the dormancy classes
    return tuple(p for p in PARTS if p in chosen)
