"""Training plan: scvi-tools' plan, logging the generator loss instead of ELBO terms."""

from __future__ import annotations

from scvi.train import TrainingPlan


class GDETrainingPlan(TrainingPlan):
    """:class:`scvi.train.TrainingPlan` that logs ``train_loss``/``validation_loss`` and extra metrics only.

    The GDE objective is the generator's own loss (an ELBO only for the CVAE), so the ELBO, KL and
    reconstruction entries that scvi-tools logs by default would be misleading duplicates.
    """

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
