"""Real-model checks for the study's arms on SmolLM2-135M (seconds: no training)."""

from real_models import SMOLLM2

pytestmark = SMOLLM2


def test_smollm2_arms_and_matched_lora():
    from headsurgeon.diagnosis import diagnose_encoded
    from headsurgeon.models import load_model
    from headsurgeon.studies import LoraPieces, StudySettings, arm_plans, matched_sizing
    from headsurgeon.surgery.data import diagnosis_prompts

    lm = load_model(None, progress=False)
    diag = diagnose_encoded(lm, diagnosis_prompts(lm)[:4], batch_size=4, progress=False)
    plans = arm_plans(diag, StudySettings(n_targets=12), seed=0)
    targets = plans["surgery"].targets
    assert len(targets) == 12 and all(diag.classes[t.layer, t.head] in ("bos_sink", "dead") for t in targets)
    rnd = plans["random_healthy"].targets
    assert len(rnd) == 12 and not set(rnd) & set(targets)
    assert all(diag.classes[h.layer, h.head] == "healthy" for h in rnd)
    sizing = matched_sizing(lm.adapter, plans["lora"])
    assert abs(sizing.lora_parameters - sizing.surgery_parameters) <= sizing.per_rank / 2
    assert abs(sizing.ratio - 1) < 0.02  # rank granularity is fine at this width
    LoraPieces(lm.adapter, sizing, seed=0)
    assert sum(p.numel() for p in lm.model.parameters() if p.requires_grad) == sizing.lora_parameters
