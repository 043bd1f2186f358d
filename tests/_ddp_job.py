"""A tiny 2-process DDP training run (CPU, gloo), launched by tests/test_distributed.py as a script.

Usage: python tests/_ddp_job.py OUT_DIR STRATEGY

Each process records the cells it trained on (``rank{r}_cells.npy``) and its share of the
training sets; the global-zero process saves the model and its set embedding.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import scvi
import torch
from lightning.pytorch.callbacks import Callback

import scgde


class RecordDraws(Callback):
    """Keeps every training batch this process drew, and its share of the training sets."""

    def __init__(self, out: Path):
        self.out, self.cells = out, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.cells.append(batch["X"].reshape(-1, batch["X"].shape[-1]).cpu().numpy())

    def on_train_end(self, trainer, pl_module):
        rank = trainer.global_rank
        np.save(self.out / f"rank{rank}_cells.npy", np.concatenate(self.cells))
        share = {"world_size": trainer.world_size, "sets": [str(s) for s in trainer.datamodule.rank_train_idx]}
        (self.out / f"rank{rank}_share.json").write_text(json.dumps(share))


def main(out: Path, strategy: str) -> None:
    torch.set_num_threads(1)  # two workers on a shared machine: more threads only contend
    scvi.settings.seed = 0
    adata = scgde.datasets.synthetic_mvn(n_sets=12, set_size=40, dim=3, seed=0)
    scgde.model.GDE.setup_anndata(adata, set_key="set")
    model = scgde.model.GDE(adata, n_latent=4, n_hidden=16)
    model.train(
        max_epochs=2,
        batches_per_epoch=4,
        sets_per_batch=4,
        cells_per_set=16,
        accelerator="cpu",
        devices=2,
        strategy=strategy,
        callbacks=[RecordDraws(out)],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    model.save(out / "model", overwrite=True)  # writes on the global-zero process only
    if scgde.model.is_global_zero():
        model.get_set_representation(progress_bar=False).to_csv(out / "embedding.csv")
        model.history["train_loss"].to_csv(out / "train_loss.csv")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
