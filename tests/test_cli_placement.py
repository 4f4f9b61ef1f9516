"""--device / --dtype (issue 13) and --device-map / --max-memory (issue 14) on operate, study and
report, through the one loading path. This machine has no GPU: what runs here is the CPU device,
bf16 weights on tiny models, accelerate's device_map="cpu", and every bad value refused in one
line (exit 2) before any training."""

from __future__ import annotations

import json

import pytest
from safetensors import safe_open

from headsurgeon.cli.main import run
from headsurgeon.models.adapters import HeadRef
from headsurgeon.surgery import SurgeryPlan

PLAN = SurgeryPlan(model={}, targets=[HeadRef(0, 1), HeadRef(1, 2)])


@pytest.fixture
def plan_file(tmp_path):
    path = tmp_path / "plan.json"
    PLAN.save(path)
    return str(path)


def _operate(model, plan, corpus, out, *extra):
    return run(["operate", plan, "-m", str(model), "--preset", "tiny", "--corpus", str(corpus), "--max-steps", "2", "--eval-every", "2",
                "-o", str(out), "--no-progress", *extra])


def _weight_dtype(model_dir) -> str:
    with safe_open(str(model_dir / "model.safetensors"), "pt") as f:
        return str(f.get_tensor(next(iter(f.keys()))).dtype)


def test_operate_bf16_weights_and_a_cpu_device_map(saved_tiny, text_corpus, plan_file, tmp_path, capsys):
    model = saved_tiny("llama-gqa")
    assert _operate(model, plan_file, text_corpus, tmp_path / "bf16", "--dtype", "bf16", "--device", "cpu") == 0
    m = json.loads((tmp_path / "bf16" / "manifest.json").read_text())
    assert m["dtype"] == "bf16" and m["invariant"]["final"]["held"] is True and m["status"] == "finished"
    assert _weight_dtype(tmp_path / "bf16" / "models" / "final") == "torch.bfloat16"  # frozen weights kept in bf16, not upcast
    # the same folder in fp32 is another run: refused in one line, nothing trained
    capsys.readouterr()
    assert _operate(model, plan_file, text_corpus, tmp_path / "bf16") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "already holds a different surgery run" in err

    assert _operate(model, plan_file, text_corpus, tmp_path / "map", "--device-map", "cpu", "--max-memory", "cpu=2GiB") == 0
    m = json.loads((tmp_path / "map" / "manifest.json").read_text())
    assert m["dtype"] is None and m["invariant"]["final"]["held"] is True
    assert _weight_dtype(tmp_path / "map" / "models" / "final") == "torch.float32"

    # the report loads its models through the same path and options
    assert run(["report", str(tmp_path / "map"), "--no-generations", "--no-ablation", "--device-map", "cpu", "--no-progress"]) == 0
    rep = json.loads((tmp_path / "map" / "report.json").read_text())
    assert rep["options"]["device_map"] == "cpu" and "skipped" not in rep["dormancy"]


BAD = {
    "operate-dtype": (["operate", "{plan}", "--dtype", "fp8"], "unknown dtype 'fp8'; use fp32 (default), bf16 or fp16"),
    "operate-device": (["operate", "{plan}", "--device", "tpu"], "unknown device 'tpu'"),
    "operate-cuda-missing": (["operate", "{plan}", "--device", "cuda"], "no usable CUDA GPU"),
    "operate-fp16": (["operate", "{plan}", "--dtype", "fp16"], "--dtype fp16 holds the frozen weights in fp16"),
    "operate-max-memory-alone": (["operate", "{plan}", "--max-memory", "cpu=1GiB"], "only apply with --device-map"),
    "operate-max-memory-bad": (["operate", "{plan}", "--device-map", "cpu", "--max-memory", "cpu=lots"], "--max-memory entry 'cpu=lots'"),
    "operate-max-memory-device": (["operate", "{plan}", "--device-map", "cpu", "--max-memory", "gpu=1GiB"], "--max-memory device 'gpu'"),
    "study-dtype": (["study", "--preset", "tiny", "--dtype", "fp8"], "unknown dtype 'fp8'"),
    "study-fp16": (["study", "--preset", "tiny", "--dtype", "fp16"], "--dtype fp16 holds the frozen weights"),
    "study-max-memory-alone": (["study", "--preset", "tiny", "--max-memory", "0=1GiB"], "only apply with --device-map"),
    "report-max-memory-bad": (["report", "{run}", "--device-map", "auto", "--max-memory", "0=1XB"], "--max-memory entry '0=1XB'"),
    "report-offload-alone": (["report", "{run}", "--offload-folder", "{tmp}/off"], "only apply with --device-map"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_placement_values_are_one_line_errors(case, saved_tiny, plan_file, tmp_path, capsys):
    argv, message = BAD[case]
    if case == "operate-cuda-missing":
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
    fill = {"plan": plan_file, "run": str(tmp_path / "no-run"), "tmp": str(tmp_path)}
    argv = [a.format(**fill) for a in argv]
    if argv[0] in ("operate", "study"):
        argv += ["-m", str(saved_tiny("llama-gqa")), "-o", str(tmp_path / "out"), "--no-progress"]
    assert run(argv) == 2, case
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, (case, err)
    assert not (tmp_path / "out" / "manifest.json").exists()  # refused before any run was started
