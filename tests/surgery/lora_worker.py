"""Train the study's LoRA arm on a saved tiny model (run by ``test_multiprocess.py`` under torchrun)."""

import sys

from headsurgeon.models import load_model
from headsurgeon.studies.lora_run import train_lora
from headsurgeon.surgery import SurgeryPlan, preset

if __name__ == "__main__":
    model_dir, plan, corpus, out, grad_accum = sys.argv[1:]
    cfg = preset("tiny").with_(corpus=corpus, max_steps=5, grad_accum=int(grad_accum))
    train_lora(load_model(model_dir), SurgeryPlan.load(plan), out_dir=out, config=cfg, progress=False)
