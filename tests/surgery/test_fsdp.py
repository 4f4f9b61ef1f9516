"""Surgical slices under FSDP2 on two CPU processes (gloo) match one process, and the frozen
weights outside the slices come out bit-identical (see ``headsurgeon.surgery.sharding``)."""


import fsdp_worker
import torch
import torchrun_helpers
from safetensors.torch import load_file

from headsurgeon.models.tiny import tiny_model_and_tokenizer
from torch_threads import one_torch_thread


def test_fsdp_two_processes_match_one_process(tmp_path):
    torchrun_helpers.check(torchrun_helpers.run_ranks(lambda: fsdp_worker.main(str(tmp_path / "fsdp.safetensors"))))
    with one_torch_thread():  # the one-process reference, in this process
        fsdp_worker.main(str(tmp_path / "single.safetensors"))
    fsdp, single = load_file(str(tmp_path / "fsdp.safetensors")), load_file(str(tmp_path / "single.safetensors"))
    original = tiny_model_and_tokenizer("llama", seed=0)[0].state_dict()
    assert fsdp.keys() == single.keys() == original.keys()
    changed = [k for k in fsdp if not torch.equal(fsdp[k], original[k])]
    assert changed and all(".self_attn." in k for k in changed)  # training moved the slices, only attention
    for k in fsdp:
        torch.testing.assert_close(fsdp[k], single[k], rtol=0, atol=1e-5)
        if ".self_attn." not in k:
            assert torch.equal(fsdp[k], original[k]), k  # frozen: bit-identical
