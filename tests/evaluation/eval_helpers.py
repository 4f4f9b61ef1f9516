"""Hand-made diagnoses with known answers, and a fake run folder built from them.

BOS masses are written in 64ths so every mean and delta below is exact in binary floating
point (a threshold test at exactly 0.0625 means what it says).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from headsurgeon.diagnosis import Diagnosis
from headsurgeon.models.adapters import HeadRef
from headsurgeon.surgery import RunFolder, RunManifest, SurgeryConfig, SurgeryPlan
from headsurgeon.surgery.manifest import save_manifest

#: 3 layers x 4 heads, in 64ths. Targets L1H0, L2H0; frozen in zone L1H1, L2H1.
BEFORE = [[8, 16, 20, 24], [58, 20, 40, 6], [62, 12, 30, 4]]
#: Outside drift already complete, frozen in-zone heads unchanged (the "early" point).
MID = [[8, 20, 20, 27], [12, 20, 26, 6], [16, 12, 34, 4]]
AFTER = [[8, 20, 20, 27], [12, 26, 26, 6], [16, 10, 34, 4]]
PLAN = SurgeryPlan(model={"num_layers": 3, "num_heads": 4}, targets=[HeadRef(1, 0), HeadRef(2, 0)],
                   frozen_in_zone=[HeadRef(1, 1), HeadRef(2, 1)])


def diag(sixty_fourths, *, prompts=("a", "b"), low_entropy=((0, 0),), name="hand-made") -> Diagnosis:
    """Two prompts at mean -+ 1/64 (so the mean over prompts is the given value exactly)."""
    bos = np.asarray(sixty_fourths, dtype=float) / 64
    per = np.stack([bos - 1 / 64, bos + 1 / 64]) if len(prompts) == 2 else bos[None]
    ent = np.full(per.shape, 2.0)
    for l, h in low_entropy:
        ent[:, l, h] = 0.2
    L, H = bos.shape
    return Diagnosis(
        model={"name": name, "family": "llama", "num_layers": L, "num_heads": H, "num_kv_heads": H},
        settings={"thresholds": {"sink": 0.5, "dead": 0.95, "low_entropy": 0.5}, "include_first_query": False, "bos": "auto",
                  "prompt_source": "test", "max_length": 64, "batch_size": 2},
        prompts=[{"name": p, "domain": "prose", "tokens": 10, "first_token": "<bos>"} for p in prompts],
        per_prompt={"bos_mass": per, "entropy": ent, "local_mass": np.full(per.shape, 0.1)},
    )


def fake_run(root: Path, points: list, plan: SurgeryPlan = PLAN, steps=(0, 4, 8)) -> Path:
    """A run folder as ``operate`` leaves it (manifest + diagnoses), without training anything."""
    (root / "diagnoses").mkdir(parents=True)
    points[0].save(root / "diagnoses" / "stock.json")
    history = []
    for step, d in zip(steps, points[1:]):
        rel = f"diagnoses/step-{step:06d}.json"
        d.save(root / rel)
        history.append({"step": step, "epoch": step / 8, "tokens": step * 64, "train_ppl": 10.0 - step / 4,
                        "heldout_ppl": 11.0 - step / 8, "diagnosis": rel})
    manifest = RunManifest(kind="surgery_run", fingerprint="hand-made", status="finished", plan=plan.to_dict(), model=points[0].model,
                           config=SurgeryConfig().to_dict(), stock={"train_ppl": 9.0, "heldout_ppl": 10.0, "diagnosis": "diagnoses/stock.json"},
                           history=history, best={"metric": "heldout_ppl", "value": 10.0, "step": 8, "path": "models/best"})
    save_manifest(RunFolder(root), manifest)
    return root
