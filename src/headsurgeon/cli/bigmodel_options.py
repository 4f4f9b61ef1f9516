"""The options every model-running command shares for big models: streaming and placement.

Defined once and reused as defaults, so ``diagnose`` and ``extremes`` spell and explain them
identically; :func:`big_model_kwargs` turns them into the library's keyword arguments.
"""

from __future__ import annotations

from pathlib import Path

import typer

STREAM = typer.Option(None, "--stream/--no-stream", help="Block-streamed: read one block at a time from the safetensors shards (peak memory one block plus activations). Default: stream when the model will not fit in memory.")
ACTIVATION_BUDGET = typer.Option("1GiB", "--activation-budget", help="Streamed path: host memory for the held hidden states; beyond it they spill to disk (safetensors).")
DEVICE_MAP = typer.Option(None, "--device-map", help="Spread the model with accelerate: 'auto' (GPUs, then CPU, then disk), 'cpu', 'cuda:0'.")
MAX_MEMORY = typer.Option(None, "--max-memory", help="With --device-map: per-device caps, e.g. '0=20GiB,1=20GiB,cpu=60GiB'.")
OFFLOAD_FOLDER = typer.Option(None, "--offload-folder", help="With --device-map: folder for weights offloaded to disk.")


def placement_option(device_map: str | None, max_memory: str | None, offload_folder: Path | None):
    """The :class:`~headsurgeon.models.placement.Placement` of ``--device-map`` / ``--max-memory`` /
    ``--offload-folder`` (``None``: the whole model on ``--device``); bad values are one-line errors."""
    from headsurgeon.models.placement import placement_from_options

    return placement_from_options(device_map, max_memory, offload_folder)


def big_model_kwargs(stream: bool | None, activation_budget: str, device_map: str | None, max_memory: str | None,
                     offload_folder: Path | None) -> dict:
    """``stream``, ``activation_budget`` and ``placement`` for :func:`~headsurgeon.diagnose` / :func:`~headsurgeon.run_extremes`."""
    from headsurgeon.models.placement import parse_size, placement_from_options

    return {
        "stream": "auto" if stream is None else stream,
        "activation_budget": parse_size(activation_budget, "--activation-budget"),
        "placement": placement_from_options(device_map, max_memory, offload_folder),
    }
