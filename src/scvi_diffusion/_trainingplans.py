"""Training plans for the latent stages (diffusion and guidance classifiers)."""

from __future__ import annotations

import torch
from lightning.pytorch.callbacks import WeightAveraging
from scvi.train import TrainingPlan


class LatentStageTrainingPlan(TrainingPlan):
    """scvi-tools :class:`~scvi.train.TrainingPlan` for a loss that is not an ELBO.

    Optimiser, learning-rate schedule and device handling are scvi-tools'; only the logging
    differs: the stage's loss is logged as ``train_loss``/``validation_loss`` and its extra
    metrics (for example classifier accuracies) as ``<name>_train``/``<name>_validation``,
    instead of ELBO terms that do not exist here.
    """

    def _shared_step(self, batch, mode: str):
        _, _, loss_output = self.forward(batch, loss_kwargs=self.loss_kwargs)
        n_obs = loss_output.n_obs_minibatch
        self.log(
            f"{mode}_loss",
            loss_output.loss,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=n_obs,
            sync_dist=self.use_sync_dist,
        )
        for name, value in loss_output.extra_metrics.items():
            self.log(
                f"{name}_{mode}",
                value.detach(),
                on_step=False,
                on_epoch=True,
                batch_size=n_obs,
                sync_dist=self.use_sync_dist,
            )
        return loss_output.loss

    def training_step(self, batch, batch_idx):
        """One optimisation step."""
        return self._shared_step(batch, "train")

    def validation_step(self, batch, batch_idx):
        """One validation step."""
        self._shared_step(batch, "validation")


def denoiser_weight_averaging(decay: float) -> WeightAveraging:
    """Lightning callback that keeps an exponential moving average of the weights.

    The decay warms up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so short runs
    average over their recent steps instead of staying near the initial weights. At the end of
    training the averaged weights replace the trained ones.
    """

    def warmed_up_ema(averaged: torch.Tensor, current: torch.Tensor, n_averaged: torch.Tensor):
        if not averaged.is_floating_point():
            # integer buffers (the null labels of a conditional denoiser) are constants
            return current
        n = float(n_averaged)
        rate = min(decay, (1.0 + n) / (10.0 + n))
        return averaged.lerp(current, 1.0 - rate)

    return WeightAveraging(avg_fn=warmed_up_ema)
