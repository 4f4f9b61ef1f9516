"""Several processes (DDP through accelerate) train the same slices as one process would.

Two ranks on this CPU, started as ``torchrun`` starts its workers (``torchrun_helpers.py``;
the user's command is ``torchrun --nproc_per_node 2 -m headsurgeon operate ...``): accelerate's CPU data-parallel mode (gloo) exercises the
same code path a multi-GPU ``accelerate launch`` does (wrapped model, gradient all-reduce,
``no_sync`` during accumulation, only the main process writes). Two processes with 2
accumulation steps consume the same 4 micro-batches per optimizer step as one process with 4,
so the final weights must agree up to float summation order. The study's LoRA arm runs on the
same skeleton and must agree the same way (its gradients are all-reduced too).
"""

import json

import lora_worker
import pytest
import torch
import torchrun_helpers
from safetensors.torch import load_file

from forked_cli import run_cli
from headsurgeon.cli.main import run as cli
from headsurgeon.models.adapters import HeadRef
from headsurgeon.models.tiny import tiny_model_and_tokenizer
from headsurgeon.surgery import SurgeryPlan
from torch_threads import one_torch_thread


@pytest.fixture
def saved(tmp_path):
    """``(model folder, plan file)``: a saved tiny Llama and a two-head plan for it."""
    model, tok = tiny_model_and_tokenizer("llama", seed=0)
    model.save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")
    plan = tmp_path / "plan.json"
    SurgeryPlan(model={}, targets=[HeadRef(0, 1), HeadRef(1, 2)]).save(plan)
    return tmp_path / "tiny", plan


def test_two_processes_match_one_process_with_twice_the_accumulation(text_corpus, saved, tmp_path):
    model_dir, plan = saved
    common = ["operate", str(plan), "-m", str(model_dir), "--preset", "tiny", "--corpus", str(text_corpus), "--other-corpus", "none",
              "--max-steps", "5", "--no-progress"]
    torchrun_helpers.check(torchrun_helpers.run_ranks(lambda: cli([*common, "--grad-accum", "2", "-o", str(tmp_path / "ddp")])))
    proc = run_cli([*common, "--grad-accum", "4", "-o", str(tmp_path / "single")])  # one process, forked from this one
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = json.loads((tmp_path / "ddp" / "manifest.json").read_text())
    single = json.loads((tmp_path / "single" / "manifest.json").read_text())
    assert ddp["outcome"]["tokens"] == single["outcome"]["tokens"]  # both counted 4 micro-batches per step
    assert ddp["invariant"]["final"]["held"]
    for key in ("train_loss", "train_loss_mean"):  # the whole step's losses, not the main process's share
        assert [r[key] for r in ddp["history"][1:]] == pytest.approx([r[key] for r in single["history"][1:]], abs=2e-4), key
    a = load_file(str(tmp_path / "ddp" / "models" / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "single" / "models" / "final" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-5)


def test_lora_two_processes_match_one_process_with_twice_the_accumulation(text_corpus, saved, tmp_path):
    model_dir, plan = saved
    args = [str(model_dir), str(plan), str(text_corpus)]
    torchrun_helpers.check(torchrun_helpers.run_ranks(lambda: lora_worker.main(*args, str(tmp_path / "ddp"), "2")))
    with one_torch_thread():  # the one-process reference, in this process
        lora_worker.main(*args, str(tmp_path / "single"), "4")
    ddp = json.loads((tmp_path / "ddp" / "manifest.json").read_text())
    single = json.loads((tmp_path / "single" / "manifest.json").read_text())
    assert ddp["kind"] == "lora_run" and ddp["outcome"]["tokens"] == single["outcome"]["tokens"]
    a = load_file(str(tmp_path / "ddp" / "adapter" / "final.safetensors"))
    b = load_file(str(tmp_path / "single" / "adapter" / "final.safetensors"))
    assert a.keys() == b.keys()
    moved = [k for k in a if "lora_B" in k and a[k].abs().sum() > 0]
    assert moved  # training happened (B starts at 0)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-5)
