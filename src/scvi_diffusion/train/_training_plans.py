"""Training plans of the stages: scvi-tools' TrainingPlan with fused Adam and epoch means."""

from __future__ import annotations

import torch
from scvi.train import TrainingPlan


class FusedAdamMixin:
    """Adam (or AdamW) with fused kernels where torch has them (CPU and CUDA).

    The update is the same as scvi-tools' default optimiser; the fused kernel does it for all
    parameters at once instead of a dozen small operations per parameter, which on a small
    network is a large part of a step.
    """

    def _optimizer_creator_fn(self, optimizer_cls):
        def create(params):
            params = list(params)
            fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
            return optimizer_cls(
                params,
                lr=self.lr,
                eps=self.eps,
                weight_decay=self.weight_decay,
                fused=fused or None,
            )

        return create


class EpochMeansMixin:
    """Log a stage's metrics once per epoch, as means summed on the device step by step.

    A Lightning ``log`` call costs about a millisecond on a CPU: as much as a whole step of the
    latent networks, and scvi-tools' plan makes six per step. Epoch means are what the plans
    logged before (``on_epoch=True``), so ``model.history`` keeps its curves.
    """

    def _add(self, mode: str, name: str, total: torch.Tensor, weight: float = 1.0) -> None:
        """Add ``total`` (a sum over ``weight`` cells or steps) to ``name``'s epoch sum."""
        sums = self.__dict__.setdefault("_epoch_sums", {}).setdefault(mode, {})
        total = total.detach()
        if name in sums:
            previous, previous_weight = sums[name]
            sums[name] = (previous + total, previous_weight + weight)
        else:
            sums[name] = (total, weight)

    def _pop_epoch_means(self, mode: str) -> dict[str, torch.Tensor]:
        """The epoch's means, which start again from zero."""
        sums = self.__dict__.setdefault("_epoch_sums", {}).pop(mode, {})
        return {name: total / weight for name, (total, weight) in sums.items()}

    def _log_epoch_means(self, means: dict[str, torch.Tensor], shown: str | None = None) -> None:
        for name, value in means.items():
            self.log(
                name,
                value,
                on_step=False,
                on_epoch=True,
                prog_bar=name == shown,
                sync_dist=self.use_sync_dist,
            )


class VAEStageTrainingPlan(EpochMeansMixin, FusedAdamMixin, TrainingPlan):
    """scvi-tools' :class:`~scvi.train.TrainingPlan` for the VAE, with a fused optimiser and
    its metrics logged once per epoch.

    The loss, the KL warm-up and the logged names (``train_loss``, ``elbo_train``,
    ``reconstruction_loss_train``, ``kl_local_train``, ``kl_global_train``, ``kl_weight`` and
    their ``validation`` counterparts) are scvi-tools'; each is the epoch's mean as scvi-tools
    computes it (per cell, the global KL per minibatch), with ``kl_weight`` at the epoch's end.
    """

    def _step(self, batch, mode: str):
        if mode == "train" and "kl_weight" in self.loss_kwargs:
            self.loss_kwargs.update({"kl_weight": self.kl_weight})
        _, _, loss_output = self.forward(batch, loss_kwargs=self.loss_kwargs)
        n_obs = loss_output.n_obs_minibatch
        loss_name = "train_loss" if mode == "train" else "validation_loss"
        self._add(mode, loss_name, loss_output.loss * n_obs, n_obs)
        self._add(mode, f"reconstruction_loss_{mode}", loss_output.reconstruction_loss_sum, n_obs)
        self._add(mode, f"kl_local_{mode}", loss_output.kl_local_sum, n_obs)
        self._add(mode, f"kl_global_{mode}", torch.as_tensor(loss_output.kl_global_sum))
        for name, value in loss_output.extra_metrics.items():
            if isinstance(value, torch.Tensor) and value.dim() == 0:
                self._add(mode, f"{name}_{mode}", value)
        return loss_output.loss

    def _log_epoch(self, mode: str) -> None:
        means = self._pop_epoch_means(mode)
        if not means:
            return
        n_total = self.n_obs_training if mode == "train" else self.n_obs_validation
        means[f"elbo_{mode}"] = (
            means[f"reconstruction_loss_{mode}"]
            + means[f"kl_local_{mode}"]
            + means[f"kl_global_{mode}"] / max(1, n_total or 1)
        )
        if mode == "train" and "kl_weight" in self.loss_kwargs:
            means["kl_weight"] = torch.as_tensor(float(self.kl_weight))
        self._log_epoch_means(means, shown="train_loss")

    def training_step(self, batch, batch_idx):
        """One optimisation step."""
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        """One validation step."""
        self._step(batch, "validation")

    def on_train_epoch_end(self):
        """Log the epoch's means."""
        self._log_epoch("train")

    def on_validation_epoch_end(self):
        """Log the epoch's means."""
        self._log_epoch("validation")


class LatentStageTrainingPlan(EpochMeansMixin, FusedAdamMixin, TrainingPlan):
    """scvi-tools :class:`~scvi.train.TrainingPlan` for a loss that is not an ELBO.

    Optimiser, learning-rate schedule and device handling are scvi-tools'; only the logging
    differs: the stage's loss is logged as ``train_loss``/``validation_loss`` and its extra
    metrics (for example classifier accuracies) as ``<name>_train``/``<name>_validation``,
    instead of ELBO terms that do not exist here, each as its mean over the epoch's steps.
    """

    def _step(self, batch, mode: str):
        _, _, loss_output = self.forward(batch, loss_kwargs=self.loss_kwargs)
        self._add(mode, f"{mode}_loss", loss_output.loss)
        for name, value in loss_output.extra_metrics.items():
            self._add(mode, f"{name}_{mode}", value)
        return loss_output.loss

    def training_step(self, batch, batch_idx):
        """One optimisation step."""
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        """One validation step."""
        self._step(batch, "validation")

    def on_train_epoch_end(self):
        """Log the epoch's mean training loss and metrics."""
        self._log_epoch_means(self._pop_epoch_means("train"), shown="train_loss")

    def on_validation_epoch_end(self):
        """Log the epoch's mean validation loss and metrics."""
        self._log_epoch_means(self._pop_epoch_means("validation"))
