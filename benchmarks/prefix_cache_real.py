"""Two-epoch surgery on SmolLM2 with and without the frozen-prefix cache: same weights? how much faster?

    python benchmarks/prefix_cache_real.py      # needs out/acceptance-plan.json (README, "Surgery on the default model")

Runs `operate` twice with the acceptance plan on a 24,000-token slice of the Python docs (2 epochs
of 91 steps of 2 x 128 tokens), once with `cache_frozen_prefix`, and prints the training seconds,
how many micro-batches skipped the frozen layers, and whether the two final models are bit-identical.
Writes out/cache-real.json.
"""
import json
from dataclasses import replace

import torch
from safetensors.torch import load_file

from headsurgeon.models import load_model
from headsurgeon.surgery import SurgeryPlan, operate, preset

plan = SurgeryPlan.load("out/acceptance-plan.json")
base = replace(preset("cpu"), max_steps=None, epochs=2, max_train_tokens=24000, eval_every=1000,
               diagnose_every_eval=False, keep_epoch_models=False, eval_sequences=4)
res = {}
for name, cache in (("plain", False), ("cached", True)):
    cfg = base.with_(cache_frozen_prefix=cache)
    out = f"out/cache-real-{name}"
    r = operate(load_model(None, progress=False), plan, out_dir=out, config=cfg, progress=False)
    m = r.manifest
    res[name] = {"train_seconds": m["timing"]["train_seconds"], "steps": m["outcome"]["steps"],
                 "heldout_ppl": m["history"][-1]["heldout_ppl"], "prefix_cache": m.get("prefix_cache")}
    print(name, res[name], flush=True)
a = load_file("out/cache-real-plain/models/final/model.safetensors")
b = load_file("out/cache-real-cached/models/final/model.safetensors")
res["max_abs_weight_difference"] = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
res["bit_identical"] = all(torch.equal(a[k], b[k]) for k in a)
print(json.dumps(res, indent=1))
json.dump(res, open("out/cache-real.json", "w"), indent=1)
