"""Surgery: plans, trainable surgical slices, the training loop, checkpoints and the invariant.

Names are imported on first use (:mod:`headsurgeon.lazy`): reading a preset or the
configuration's fields (the CLI's option help) does not import torch.
"""

from headsurgeon.lazy import lazy_package

lazy_package(__name__, {
    "PRESETS": ".config", "SurgeryConfig": ".config", "auto_preset": ".config", "preset": ".config",
    "RunEstimate": ".estimate", "estimate": ".estimate",
    "RunFolder": ".folder",
    "RunManifest": ".manifest",
    "SliceTraining": ".operate", "operate": ".operate", "verify_model_dir": ".operate",
    "best_diagnosis": ".passes", "best_model_dir": ".passes", "next_pass_plan": ".passes",
    "GQA_MODES": ".plan", "SurgeryPlan": ".plan",
    "make_plan": ".rules", "parse_head": ".rules", "parse_range": ".rules",
    "SurgicalSlices": ".slices", "surgical_regions": ".slices",
    "RunInterrupted": ".training_run", "SurgeryResult": ".training_run", "Trainable": ".training_run", "run_training": ".training_run",
})
