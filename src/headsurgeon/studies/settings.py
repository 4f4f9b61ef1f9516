"""Study settings: which arms, which seeds, which heads, what training budget, which statistics.

One flat dataclass (the training budget is a :class:`~headsurgeon.surgery.SurgeryConfig`, shared
by every arm) saved inside ``study.json``. Two presets:

* ``tiny``: tiny random models in the tests; seconds per run. Random tiny models have no
  collapsed heads, so the targets are the heads with the highest BOS mass (``target_rule="top"``):
  it exercises the machinery and says nothing about collapse.
* ``smollm2``: the default model (SmolLM2-135M) on this 2-core CPU in about 45 minutes for all
  arms x 3 seeds; ``docs/studies.md`` shows the measurements behind each number.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.options import check_fields, option
from headsurgeon.surgery import SurgeryConfig, preset

#: Arms in the order they run for each seed (``stock`` is the reference the others are measured against).
ARMS = ("stock", "surgery", "no_reinit", "random_healthy", "extended", "lora")
ARM_LABELS = {
    "stock": "stock (no training)",
    "surgery": "surgery (re-init + train collapsed targets)",
    "no_reinit": "same slices, no re-initialisation",
    "random_healthy": "surgery on random healthy heads",
    "extended": "extended (targets + healthy column)",
    "lora": "LoRA, matched parameter count",
}
TARGET_RULES = ("collapsed", "top")


@dataclass(frozen=True)
class StudySettings:
    arms: tuple[str, ...] = ARMS  # stock always runs: the other arms are measured against it
    seeds: tuple[int, ...] = (0, 1, 2)  # each seed fixes held-out split, data order, re-init, random heads, LoRA init
    training: SurgeryConfig = field(default_factory=SurgeryConfig)  # budget shared by every training arm
    n_targets: int = option(12, "heads the surgery arm targets", integer=True, min=1, flag="--targets")
    target_rule: str = option("collapsed", "collapsed: the n most collapsed heads (highest BOS mass among BOS-sink/DEAD); top: highest BOS mass, any class", choices=TARGET_RULES)
    layers: tuple[int, int] | None = None  # restrict targets to this layer range (inclusive)
    extra_columns: tuple[int, ...] | None = None  # extended arm: head columns added in the targets' layer range (None: the column with most healthy heads there)
    random_same_layers: bool = True  # random healthy heads drawn from the targets' layers where possible
    lora_scale: float = option(2.0, "LoRA alpha = lora_scale x rank", above=0)
    drift_threshold: float = option(0.05, "|delta BOS mass| above which an untouched head drifts", above=0, below=1)
    ci_level: float = option(0.95, "confidence level of the intervals", above=0, below=1)
    n_boot: int = option(10000, "bootstrap resamples per interval", integer=True, min=100)
    threads: int | None = option(None, "torch CPU threads while the study runs (None: torch's default); see docs/studies.md", integer=True, min=1)
    preset: str | None = None  # name of the preset these settings came from (recorded only)

    def __post_init__(self):
        bad = [a for a in self.arms if a not in ARMS]
        if bad:
            raise HeadsurgeonError(f"unknown arm '{bad[0]}'; choose from {', '.join(ARMS)}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise HeadsurgeonError(f"--seeds needs at least one seed and no repeats, not {','.join(map(str, self.seeds)) or 'nothing'}; write e.g. --seeds 0,1,2")
        check_fields(self)
        # stock first, the rest in canonical order, whatever order the user typed
        object.__setattr__(self, "arms", tuple(a for a in ARMS if a == "stock" or a in self.arms))

    @property
    def training_arms(self) -> tuple[str, ...]:
        return tuple(a for a in self.arms if a != "stock")

    def to_dict(self) -> dict:
        doc = asdict(self)
        doc["training"] = self.training.to_dict()
        return {k: list(v) if isinstance(v, tuple) else v for k, v in doc.items()}  # as JSON gives them back

    @classmethod
    def from_dict(cls, doc: dict) -> StudySettings:
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in doc.items() if k in names}
        kw["training"] = SurgeryConfig.from_dict(doc.get("training", {}))
        for key in ("arms", "seeds", "extra_columns", "layers"):
            if kw.get(key) is not None:
                kw[key] = tuple(kw[key])
        return cls(**kw)

    def with_(self, **changes) -> StudySettings:
        """A copy with the given fields changed (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


STUDY_PRESETS: dict[str, StudySettings] = {
    "tiny": StudySettings(
        training=preset("tiny").with_(max_steps=6, eval_every=3, keep_epoch_models=False),
        n_targets=2, target_rule="top", n_boot=2000, preset="tiny",
    ),
    # Measured on this 2-core CPU (docs/studies.md): with both cores and no other job ~165 s per
    # training run (48 steps of 1,024 tokens + 4 evaluations), ~15 min per seed, ~45 min for all
    # arms x 3 seeds; with one thread ~300 s per run (~80 min). On a machine busy with other jobs
    # pass --threads 1: there a second OpenMP thread made every piece several times slower.
    "smollm2": StudySettings(
        training=preset("cpu").with_(
            seq_len=128, batch_size=4, grad_accum=2, max_steps=48, eval_every=16, eval_sequences=12,
            gradient_checkpointing=False, keep_epoch_models=False, lr=1e-3,
        ),
        n_targets=12, target_rule="collapsed", threads=None, preset="smollm2",
    ),
    # The question at convergence (issue 16): every arm trains until its held-out perplexity has
    # not improved for `patience` evaluations, or the cap; then every arm of a seed is continued to
    # the largest number of steps any arm of that seed needed. Cap ~ one epoch of python-docs;
    # an evaluation every 50 steps (~28 per epoch) finds a best point inside it; patience 4 = 200
    # steps past the best. Measured 2026-12-02 on an idle machine (docs/studies.md): with the frozen
    # weights in bf16 (--dtype bf16) ~2.5 s per step and ~10 s per evaluation on one thread, two
    # seeds side by side: ~65 min per run to the cap, ~9 hours for the study. Resumable across
    # sessions (and machines, with scripts/study-state).
    "smollm2-converged": StudySettings(
        training=preset("cpu").with_(
            seq_len=128, batch_size=4, grad_accum=2, max_steps=1400, eval_every=50, eval_sequences=12, patience=4,
            gradient_checkpointing=False, keep_epoch_models=False, lr=1e-3,
        ),
        n_targets=12, target_rule="collapsed", threads=1, preset="smollm2-converged",
    ),
}


def study_preset(name: str) -> StudySettings:
    if name not in STUDY_PRESETS:
        raise HeadsurgeonError(f"unknown study preset '{name}'; choose from {', '.join(STUDY_PRESETS)}")
    return STUDY_PRESETS[name]
