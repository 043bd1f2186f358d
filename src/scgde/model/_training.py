"""Training plan: scvi-tools' plan, logging the generator loss and decaying the learning rate."""

from __future__ import annotations

import math

import torch
from scvi.train import TrainingPlan


class GDETrainingPlan(TrainingPlan):
    """:class:`scvi.train.TrainingPlan` for GDE.

    - logs ``train_loss``/``validation_loss`` and extra metrics only: the GDE objective is the
      generator's own loss (an ELBO only for the CVAE), so scvi-tools' ELBO/KL entries would be
      misleading duplicates;
    - ``lr_schedule="constant"`` (default; measured best with the flow generator) keeps the
      learning rate fixed; ``"cosine"`` warms it up over the first 2% of steps and decays it to
      ``lr * 0.01`` along a cosine over the run;
    - every training epoch runs in train mode (dropout, classifier-free condition dropout), also
      when the module was left in eval mode by an embedding call.
    """

    def __init__(self, module, *, lr_schedule: str = "constant", **kwargs):
        if lr_schedule not in ("cosine", "constant"):
            raise ValueError(f"lr_schedule must be 'cosine' or 'constant', got {lr_schedule!r}.")
        super().__init__(module, **kwargs)
        self.lr_schedule = lr_schedule

    def on_train_epoch_start(self):
        self.module.train()

    def compute_and_log_metrics(self, loss_output, metrics, mode):
        for key, value in (loss_output.extra_metrics or {}).items():
            self.log(
                f"{key}_{mode}",
                value.detach() if hasattr(value, "detach") else value,
                on_step=self.on_step,
                on_epoch=self.on_epoch,
                batch_size=loss_output.n_obs_minibatch,
                sync_dist=self.use_sync_dist,
            )

    def configure_optimizers(self):
        config = super().configure_optimizers()
        if self.lr_schedule == "constant" or "lr_scheduler" in config:
            return config
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = max(1, int(0.02 * total))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(config["optimizer"], factor)
        config["lr_scheduler"] = {"scheduler": scheduler, "interval": "step"}
        return config
