"""The surgical invariant: every element outside the surgical regions is bit-identical.

For each parameter we hash its bytes with the surgical regions blanked (the *frozen* part),
plus each region on its own. The input model's frozen hashes go into the run manifest; any
saved model can be re-hashed and compared, so "nothing else changed" is checked, not assumed.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

import torch

from headsurgeon.models.adapters import TensorSlice


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()[:32]


def frozen_hashes(state: dict[str, torch.Tensor], regions: list[TensorSlice]) -> dict[str, str]:
    """``{param name: sha256 of the tensor with surgical regions zeroed}``."""
    by_param: dict[str, list[TensorSlice]] = defaultdict(list)
    for r in regions:
        by_param[r.param].append(r)
    out = {}
    for name, tensor in state.items():
        if not torch.is_tensor(tensor) or not tensor.is_floating_point():
            continue
        if name in by_param:
            tensor = tensor.detach().clone()
            for r in by_param[name]:
                r.view(tensor).zero_()
        out[name] = _digest(tensor)
    return out


def region_hashes(state: dict[str, torch.Tensor], regions: list[TensorSlice]) -> dict[str, str]:
    return {f"{r.param}[{r.dim}:{r.start}:{r.stop}]": _digest(r.view(state[r.param])) for r in regions}


def compare_hashes(reference: dict[str, str], current: dict[str, str]) -> dict:
    """Invariant report: which frozen parts differ (should be none)."""
    changed = sorted(k for k in reference if current.get(k) != reference[k])
    missing = sorted(set(reference) - set(current))
    return {"held": not changed and not missing, "checked_tensors": len(reference), "changed": changed, "missing": missing}


def weights_digest(model: torch.nn.Module) -> str:
    """One digest of every floating-point tensor of a model (its identity as a run input).

    Two models of the same name and shape but other weights (a retrained folder under the
    same path) get different digests, so a run folder is never continued from the wrong model.
    """
    per_tensor = frozen_hashes(model.state_dict(), [])
    return hashlib.sha256("\n".join(f"{k}={v}" for k, v in sorted(per_tensor.items())).encode()).hexdigest()
