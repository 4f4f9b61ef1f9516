"""The ``--device`` and ``--dtype`` options, the same on every command that loads a model.

Both are handed to :func:`headsurgeon.load_model` (the one loading path), which validates them.
"""

from __future__ import annotations

import typer


def device_option():
    return typer.Option("cpu", "--device", help="cpu, cuda, cuda:N, mps, or auto (layers spread over all GPUs by accelerate's device_map).")


def dtype_option(*, training: bool = False):
    if training:
        return typer.Option("fp32", "--dtype", help="The frozen weights' dtype: fp32 (default), bf16, or fp16 (with --allow-fp16); the "
                                                    "trained slices stay fp32 master copies. --precision sets the autocast of the training step.")
    return typer.Option("fp32", "--dtype", help="Weights and activations: fp32 (default), bf16 or fp16.")
