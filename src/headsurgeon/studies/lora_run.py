"""Train the matched-LoRA baseline with the surgery arm's budget, on surgery's own run skeleton.

Everything but *what* is trained is :func:`headsurgeon.surgery.training_run.run_training`, the
skeleton ``operate`` runs on: the run identity and folder lock, the corpus, held-out split,
evaluation subsets and diagnosis prompts, the training loop (same data order for the seed,
micro-batching, clipping, precision, data-parallel wrapping), AdamW with the same learning rate
and weight decay, the warmup + cosine schedule, the evaluation rows, checksummed checkpoints
and resume. Only the main process writes.

What differs, and why (:class:`LoraTraining`): the LoRA starts *at* the stock model (B = 0),
while surgery starts from re-initialised heads, so the step-0 row here is the stock row (not
evaluated twice); the model is not saved as a full ``save_pretrained`` folder (the adapter
matrices of the best and last steps are, in ``adapter/``), and there is no bit-identity
invariant to check: LoRA changes the whole projections of its layers by design.

The run folder's manifest is a :class:`~headsurgeon.surgery.manifest.RunManifest` of kind
``lora_run`` (with the ``lora`` sizing), which ``compare`` and ``report`` open like a surgery run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save_file

from headsurgeon.models import LoadedModel
from headsurgeon.surgery import SurgeryConfig, SurgeryPlan
from headsurgeon.surgery.data import RunData
from headsurgeon.surgery.folder import RunFolder
from headsurgeon.surgery.manifest import RunManifest
from headsurgeon.surgery.training_run import StockEvaluation, SurgeryResult, Trainable, run_training

from .lora import LoraPieces, LoraSizing, matched_sizing

KIND = "lora_run"


class LoraTraining(Trainable):
    """The LoRA arm's trainable tensors: peft LoRA matrices on the targets' layers."""

    kind = KIND
    what = "LoRA run"

    def __init__(self, loaded: LoadedModel, plan: SurgeryPlan, cfg: SurgeryConfig, *, scale: float = 2.0):
        super().__init__(loaded, plan, cfg)
        self.sizing = matched_sizing(loaded.adapter, plan, scale=scale)

    def identity(self) -> dict:
        return {"lora": self.sizing.to_dict()}

    def install(self, manifest: RunManifest) -> None:
        self.pieces = LoraPieces(self.adapter, self.sizing, seed=self.cfg.seed)

    def parameters(self) -> list[torch.nn.Parameter]:
        return self.pieces.parameters()

    def named_pieces(self) -> dict[str, torch.nn.Parameter]:
        return self.pieces.named_pieces()

    def start_row(self, evaluate: Callable[[str], dict], manifest: RunManifest) -> dict:
        # B = 0: the model at step 0 *is* the stock model, so its row is the stock row.
        return {"label": "start (LoRA B = 0: the stock model)", **manifest.stock}

    def kept(self, folder: RunFolder, tag: str) -> str:
        return folder.adapter_rel(tag)

    def save(self, folder: RunFolder, tag: str, manifest: RunManifest, *, same_as: str | None = None) -> None:
        target = folder.adapter(tag)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".tmp-{tag}-")
        os.close(fd)
        try:
            if same_as is not None and folder.adapter(same_as).is_file():  # absent in a folder copied without it
                os.unlink(tmp)
                try:
                    os.link(folder.adapter(same_as), tmp)
                except OSError:
                    shutil.copy2(folder.adapter(same_as), tmp)
            else:
                save_file({k: p.detach().contiguous().cpu() for k, p in self.pieces.named_pieces().items()}, tmp)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def train_lora(
    loaded: LoadedModel,
    plan: SurgeryPlan,
    *,
    out_dir: str | Path,
    config: SurgeryConfig,
    scale: float = 2.0,
    progress: bool = True,
    stop_after_step: int | None = None,
    data: RunData | None = None,
    stock: StockEvaluation | None = None,
    budget_steps: int | None = None,
) -> SurgeryResult:
    """Train LoRA on the layers of ``plan``'s targets with a matched parameter count.

    ``plan``'s targets choose the layers and the parameter count to match, and are the heads
    whose health and ablation effect are tracked. ``stop_after_step`` simulates a kill (tests);
    ``data``, ``stock`` and ``budget_steps`` as in :func:`~headsurgeon.surgery.training_run.run_training`.
    """
    return run_training(LoraTraining(loaded, plan, config, scale=scale), out_dir=out_dir, progress=progress,
                        stop_after_step=stop_after_step, data=data, stock=stock, budget_steps=budget_steps)


def load_lora_weights(loaded: LoadedModel, run_dir: str | Path, manifest: dict) -> LoraPieces:
    """Re-inject a finished run's LoRA (seeded as it was) and load its final matrices."""
    from safetensors.torch import load_file

    sizing = LoraSizing(**{k: v for k, v in manifest["lora"].items() if k != "ratio"})
    pieces = LoraPieces(loaded.adapter, sizing, seed=manifest["config"]["seed"])
    pieces.load_pieces(load_file(str(RunFolder(run_dir).adapter("final"))))
    loaded.model.eval()
    return pieces
