"""Worker for ``test_fsdp.py``: three AdamW steps on surgical slices, sharded or not.

Run in two ranks (``torchrun_helpers.run_ranks``, as ``torchrun --nproc_per_node 2`` would:
FSDP2 ``fully_shard`` over gloo, each rank half of every batch), or ``main`` called in the test
process (one process, the whole batch); writes the merged model from rank 0.
"""

import os
import sys

import torch
import torch.distributed as dist
from safetensors.torch import save_file

from headsurgeon.models import wrap_model
from headsurgeon.models.adapters import HeadRef
from headsurgeon.models.tiny import tiny_model_and_tokenizer
from headsurgeon.surgery import SurgeryPlan
from headsurgeon.surgery.sharding import merged_full_state_dict, piece_keys, shard_for_training, trainable_pieces
from headsurgeon.surgery.slices import SurgicalSlices


def main(out: str) -> None:
    torch.set_num_threads(1)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        dist.init_process_group("gloo")
    rank = dist.get_rank() if world > 1 else 0
    model, tok = tiny_model_and_tokenizer("llama", seed=0)
    loaded = wrap_model(model, tok)
    slices = SurgicalSlices(loaded.adapter, SurgeryPlan(model={}, targets=[HeadRef(0, 1), HeadRef(1, 2)]), seed=1).install()
    keys = piece_keys(model, slices)  # before sharding replaces the parameter objects
    if world > 1:
        from torch.distributed.device_mesh import init_device_mesh

        shard_for_training(model, slices, mesh=init_device_mesh("cpu", (world,)))
    optimizer = torch.optim.AdamW(trainable_pieces(model) if world > 1 else slices.parameters(), lr=1e-2, weight_decay=0.0)
    data = torch.randint(0, 256, (3, 4, 16), generator=torch.Generator().manual_seed(5))
    for step in range(3):
        batch = data[step][rank::world]  # equal rows per rank: the mean of rank gradients is the full-batch gradient
        model(input_ids=batch, labels=batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    merged = merged_full_state_dict(model, slices, keys) if world > 1 else slices.merged_state_dict()
    if rank == 0:
        save_file({k: v.contiguous() for k, v in merged.items()}, out)
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
