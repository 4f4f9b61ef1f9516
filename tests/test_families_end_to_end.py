"""Every supported family through ``diagnose`` -> ``plan`` -> ``operate`` -> ``compare`` -> ``report``.

Each case is a tiny random model saved with ``save_pretrained`` and loaded back the way a user's
folder is (``load_model``), so the family's adapter, its attention-path choice (eager, the
gpt-oss sink-column function, Falcon's ALiBi-once hook) and its declarations are exercised as a
user meets them. Per family the test also checks what the family adds: the declarations are in
the diagnosis, the plan and the manifest; parameters shared by all heads (q/k norms, sinks)
come out bit-identical; q/k/v biases are re-initialised with their head; OLMo 2's warning is
recorded in the plan and the manifest.

What a family can change in a figure is only the data it plots (the figure code knows no
family): windowed layers average fewer rows, a sink column takes mass off the keys, ALiBi
biases the maps. The cases in ``REAL_FIGURES`` cover those (BLOOM: ALiBi; gpt-oss: a sink
column and sliding windows) and render
every figure for real, each PNG checked to decode and not be blank. Drawing takes ~9 s of a
tiny case on the loaded test machine, so the other cases stub ``Figure.savefig`` with one
constant 1x1 PNG: every figure is still built from the family's numbers, only not drawn.
"""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from figure_stub import PNG, stub_savefig
from headsurgeon import diagnose
from headsurgeon.evaluation import compare
from headsurgeon.evaluation.outputs import write_comparison
from headsurgeon.models import load_model
from headsurgeon.prompts import Prompt
from headsurgeon.report import ReportOptions, build_report
from headsurgeon.surgery import SurgeryPlan, make_plan, operate, preset

#: One case per supported family, and Falcon's ALiBi model (its own attention-path fix); the
#: other layouts (Falcon multi-query, windowed Mistral) are covered by the adapter tests.
CASES = [
    "bloom", "llama-gqa", "gpt2", "gpt_neox",
    "qwen3-gqa", "gemma2", "gemma3", "olmo2", "phi3-gqa", "gpt_oss",
    "falcon-groups", "falcon-alibi", "mpt",
]
PROMPTS = [
    Prompt("a", "prose", "The river ran quietly past the old mill, where nobody had worked for years."),
    Prompt("b", "code", "def area(r):\n    return 3.14159 * r * r  # a circle, longer than any window"),
]


#: Cases whose figures are drawn for real (see the module docstring).
REAL_FIGURES = ("bloom", "gpt_oss")

@pytest.fixture
def figures(request, monkeypatch):
    """Real drawing for the ``REAL_FIGURES`` cases; a constant 1x1 PNG for the others."""
    if request.node.callspec.params["case"] in REAL_FIGURES:
        return "real"

    stub_savefig(monkeypatch)
    return "stub"


def _pngs(root, report_html: str) -> dict[str, bytes]:
    """Every PNG the commands wrote, as files or embedded in the report page."""
    found = {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}
    for i, data in enumerate(re.findall(r'src="data:image/png;base64,([^"]+)"', report_html)):
        found[f"report.html#img{i}"] = base64.b64decode(data)
    return found


def _check_figures(pngs: dict[str, bytes], mode: str) -> None:
    assert len(pngs) >= 10, sorted(pngs)  # diagnosis, comparison and report figures
    for name, data in pngs.items():
        if mode == "stub":
            assert data == PNG, name
            continue
        image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        assert min(image.shape[:2]) >= 100, (name, image.shape)
        assert len(np.unique(image.reshape(-1, 3), axis=0)) > 8, name  # something was drawn on it


def _state(folder) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


@pytest.mark.parametrize("case", CASES)
def test_family_runs_every_command(case, tiny_factory, text_corpus, tmp_path, figures):
    tiny = tiny_factory(case)
    stock = tmp_path / "stock"
    tiny.model.save_pretrained(stock)
    tiny.tokenizer.save_pretrained(stock)

    # diagnose
    lm = load_model(str(stock), progress=False)
    diag = diagnose(lm, prompts=PROMPTS, out_dir=tmp_path / "diag", progress=False)
    doc = json.loads((tmp_path / "diag" / "diagnosis.json").read_text())
    attention = doc["model"]["attention"]
    assert attention == lm.adapter.attention_traits()
    assert doc["summary"].get("family_decisions", []) == attention["decisions"]
    windows = [lm.adapter.attention_window(l) for l in range(lm.adapter.num_layers)]
    assert doc["layers"]["window"] == windows
    if any(w is not None for w in windows):
        rows = doc["summary"]["by_layer_type"]["local"]
        assert rows["bos_rows"] < sum(p["tokens"] - 1 for p in diag.prompts) * len(rows["layers"])  # rows past the window left out
    if lm.adapter.sink_column:
        assert len(doc["sinks"]["logits"]) == lm.adapter.num_layers and "sink_mass" in doc
    assert (doc["alibi"] is not None) == attention["alibi"]  # the slope report for every ALiBi family

    # plan
    plan = make_plan(diag, top=2)
    plan.save(tmp_path / "plan.json")
    plan_doc = json.loads((tmp_path / "plan.json").read_text())
    assert plan_doc["model"]["attention"] == attention
    assert plan_doc["warnings"] == attention["warnings"]

    # operate
    cfg = preset("tiny").with_(corpus=str(text_corpus), max_steps=2, eval_every=2)
    res = operate(str(stock), SurgeryPlan.load(tmp_path / "plan.json"), out_dir=tmp_path / "run", config=cfg, progress=False)
    m = res.manifest
    assert m["status"] == "finished" and res.invariant_held
    assert m["model"]["attention"] == attention and m["warnings"] == attention["warnings"]
    before, after = _state(stock), _state(tmp_path / "run" / "models" / "final")
    for layer in range(lm.adapter.num_layers):
        for name in lm.adapter.shared_parameters(layer):  # q/k norms, sinks: frozen, bit-identical
            assert torch.equal(before[name], after[name]), name
    roles = {r["role"] for r in m["surgical_regions"]}
    if lm.adapter.head_slices(0, 0).q_bias is not None:
        assert "q_bias" in roles  # a head's biases are re-initialised with it
        r = next(r for r in m["surgical_regions"] if r["role"] == "q_bias")
        assert not torch.equal(before[r["param"]][r["start"]:r["stop"]], after[r["param"]][r["start"]:r["stop"]])

    # compare and report
    comparison = compare([tmp_path / "run"])
    assert write_comparison(comparison, tmp_path / "compare")
    opts = ReportOptions(max_new_tokens=4, ablation_per_group=1, ablation_sequences=1, reuse=False)
    report = build_report(tmp_path / "run", out=tmp_path / "report.html", options=opts, progress=False)
    assert (tmp_path / "report.html").is_file() and report is not None
    _check_figures(_pngs(tmp_path, (tmp_path / "report.html").read_text(encoding="utf-8")), figures)


def test_olmo2_declares_non_local_surgery_and_warns(tiny_factory):
    a = tiny_factory("olmo2").adapter
    assert a.surgery_is_local is False and a.qk_norm_scope == "all_heads"
    assert a.surgery_warnings() and "not local" in a.surgery_warnings()[0]
    for case in ("qwen3-gqa", "gemma3"):
        b = tiny_factory(case).adapter
        assert b.surgery_is_local and b.qk_norm_scope == "head_dim" and b.surgery_warnings() == []
