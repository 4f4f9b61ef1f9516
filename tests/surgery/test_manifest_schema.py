"""docs/schema.md documents every key a run manifest carries, for both kinds of run."""

import re
from pathlib import Path

from headsurgeon.models import wrap_model
from headsurgeon.models.adapters import HeadRef
from headsurgeon.models.tiny import tiny_model_and_tokenizer
from headsurgeon.studies.lora_run import train_lora
from headsurgeon.surgery import SurgeryPlan, operate, preset

DOCS = Path(__file__).resolve().parents[2] / "docs" / "schema.md"
PLAN = SurgeryPlan(model={}, targets=[HeadRef(0, 1), HeadRef(1, 2)])
NESTED = {"model", "versions", "best", "invariant", "stopping"}


def test_every_manifest_key_is_documented(text_corpus, tmp_path):
    documented = set(re.findall(r"`(manifest\.[a-z_0-9.\[\]]+)`", DOCS.read_text()))
    cfg = preset("tiny").with_(corpus=str(text_corpus), max_steps=4, eval_every=2)
    docs = [operate(wrap_model(*tiny_model_and_tokenizer("llama")), PLAN, out_dir=tmp_path / "s", config=cfg, progress=False).manifest,
            train_lora(wrap_model(*tiny_model_and_tokenizer("llama")), PLAN, out_dir=tmp_path / "l", config=cfg, progress=False).manifest]
    import json

    on_disk = [json.loads((tmp_path / d / "manifest.json").read_text()) for d in ("s", "l")]
    for doc in [*docs, *on_disk]:
        for key, value in doc.items():
            assert f"manifest.{key}" in documented, f"manifest.{key} is not documented in docs/schema.md"
            if key in NESTED and isinstance(value, dict) and key != "invariant":
                for sub in value:
                    assert f"manifest.{key}.{sub}" in documented, f"manifest.{key}.{sub} is not documented"
        for row in doc["history"]:
            for key in row:
                assert f"manifest.history[].{key}" in documented, f"manifest.history[].{key} is not documented"
