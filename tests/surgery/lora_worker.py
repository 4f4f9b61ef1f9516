"""Train the study's LoRA arm on a saved tiny model (run by ``test_multiprocess.py`` in two ranks,
and called in the test process for the one-process reference)."""

import sys

from headsurgeon.models import load_model
from headsurgeon.studies.lora_run import train_lora
from headsurgeon.surgery import SurgeryPlan, preset


def main(model_dir: str, plan: str, corpus: str, out: str, grad_accum: str) -> None:
    cfg = preset("tiny").with_(corpus=corpus, max_steps=5, grad_accum=int(grad_accum))
    train_lora(load_model(model_dir, progress=False), SurgeryPlan.load(plan), out_dir=out, config=cfg, progress=False)


if __name__ == "__main__":
    main(*sys.argv[1:])
