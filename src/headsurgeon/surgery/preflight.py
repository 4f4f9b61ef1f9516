"""Checks a surgery run makes before it reads weights or evaluates anything.

:func:`check_run_inputs` is called twice by :func:`~headsurgeon.surgery.operate` (and the
study's training arms): first with what the model's ``config.json`` says
(:func:`headsurgeon.models.preflight.model_facts`, no weights read), then with the loaded
model's description, which adds the weights fingerprint. Either way a wrong plan or an
impossible sequence length fails before the stock model is evaluated.
"""

from __future__ import annotations

from headsurgeon.errors import HeadsurgeonError

from .config import SurgeryConfig
from .plan import SurgeryPlan


def check_sequence_length(seq_len: int, max_positions: int | None, model_name: str, flag: str = "--seq-len") -> None:
    """Refuse sequences longer than the model's position table (an IndexError on GPT-2)."""
    if max_positions is not None and seq_len > max_positions:
        raise HeadsurgeonError(f"{flag} {seq_len} is beyond the {max_positions} positions of {model_name} "
                               f"(max_position_embeddings / n_positions in its config.json); pass {flag} {max_positions} or less")


def check_training_dtype(dtype, config: SurgeryConfig) -> None:
    """fp16 weights train the same way fp16 precision does (it underflowed in the paper): only with ``allow_fp16``."""
    import torch

    from headsurgeon.models.loading import parse_dtype

    if parse_dtype(dtype) == torch.float16 and not config.allow_fp16:
        raise HeadsurgeonError("--dtype fp16 holds the frozen weights in fp16, which underflowed in the paper's training; "
                               "use --dtype bf16 or fp32, or pass --allow-fp16")


def check_run_inputs(plan: SurgeryPlan, model: dict, max_positions: int | None, config: SurgeryConfig, *,
                     allow_other_model: bool = False) -> list[str]:
    """Plan against model (family, shape, weights; heads in range) and sequence length; returns
    the differences ``allow_other_model`` let through (to record as notes)."""
    notes = plan.check_model(model, allow_other_model=allow_other_model)
    plan.check_against(model["num_layers"], model["num_heads"], model.get("name"))
    check_sequence_length(config.seq_len, max_positions, model.get("name") or "this model")
    return notes
