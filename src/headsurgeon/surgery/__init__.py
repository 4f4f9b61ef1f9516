"""Surgery: plans, trainable surgical slices, the training loop, checkpoints and the invariant."""

from .config import PRESETS, SurgeryConfig, auto_preset, preset
from .estimate import RunEstimate, estimate
from .folder import RunFolder
from .manifest import RunManifest
from .operate import SliceTraining, operate, verify_model_dir
from .passes import best_diagnosis, best_model_dir, next_pass_plan
from .plan import GQA_MODES, SurgeryPlan
from .rules import make_plan, parse_head, parse_range
from .slices import SurgicalSlices, surgical_regions
from .training_run import RunInterrupted, SurgeryResult, Trainable, run_training

__all__ = [
    "GQA_MODES", "PRESETS", "RunEstimate", "RunFolder", "RunInterrupted", "RunManifest", "SliceTraining", "SurgeryConfig",
    "SurgeryPlan", "SurgeryResult", "SurgicalSlices", "Trainable", "auto_preset", "best_diagnosis", "best_model_dir", "estimate",
    "make_plan", "next_pass_plan", "operate", "parse_head", "parse_range", "preset", "run_training", "surgical_regions",
    "verify_model_dir",
]
