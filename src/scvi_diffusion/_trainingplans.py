"""Training plans for the latent stages (diffusion and guidance classifiers)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from lightning.pytorch.callbacks import Callback, WeightAveraging
from scvi.train import TrainingPlan

# what to try when a stage's loss stops being finite, per stage
NON_FINITE_ADVICE = {
    "vae": (
        "Try a lower learning rate (`vae_plan_kwargs={'lr': 1e-4}`), gradient clipping "
        "(`gradient_clip_val=1.0`), or look for cells with extreme counts."
    ),
    "diffusion": (
        "Try a lower learning rate (`diffusion_plan_kwargs={'lr': 1e-4}`) or gradient clipping "
        "(`gradient_clip_val=1.0`); if the latents are extreme, retrain the VAE first."
    ),
    "classifier": (
        "Try a lower learning rate (`classifier_plan_kwargs={'lr': 1e-4}`) or gradient "
        "clipping (`gradient_clip_val=1.0`)."
    ),
}


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


class NonFiniteLossError(RuntimeError):
    """A training stage stopped because its loss or weights became NaN or infinite.

    Raised by :meth:`ScDiffusion.train <scvi_diffusion.ScDiffusion.train>` as soon as a
    training loss is not finite (instead of training on, or failing later inside torch with
    NaN weights), and when a stage fails with NaN or infinite weights. The message names the
    stage and what to try: a lower learning rate for that stage (``vae_plan_kwargs``,
    ``diffusion_plan_kwargs`` or ``classifier_plan_kwargs``, e.g. ``{"lr": 1e-4}``),
    gradient clipping (``gradient_clip_val=1.0``), or, for the VAE, looking for cells with
    extreme counts. Stages trained before the failed one are kept, so only that stage needs
    training again, with ``model.train(stages=[error.stage])``.

    Parameters
    ----------
    stage : str
        The stage that stopped: ``"vae"``, ``"diffusion"``, ``"classifier"`` or, for a
        classifier trained on demand for an unregistered obs column, ``"classifier_<key>"``.
    where : str
        What became non-finite, e.g. ``"the loss at epoch 3, step 120"`` or ``"the weights"``.

    Attributes
    ----------
    stage : str
        The stage that stopped.

    Examples
    --------
    Retrain only the failed stage, with a lower learning rate:

    >>> import scvi_diffusion
    >>> try:  # doctest: +SKIP
    ...     model.train()
    ... except scvi_diffusion.NonFiniteLossError as error:
    ...     print(error)
    ...     model.train(stages=[error.stage], diffusion_plan_kwargs={"lr": 1e-4})

    The message says what to try:

    >>> error = scvi_diffusion.NonFiniteLossError("diffusion", "the loss at step 120")
    >>> error.stage
    'diffusion'
    >>> print(error)  # doctest: +ELLIPSIS
    Training stage 'diffusion' stopped: the loss at step 120 became NaN or infinite. Try a ...
    >>> "diffusion_plan_kwargs={'lr': 1e-4}" in str(error)
    True
    """

    def __init__(self, stage: str, where: str):
        # classifiers trained on demand for unregistered columns are named "classifier_<key>"
        advice = NON_FINITE_ADVICE.get(stage, NON_FINITE_ADVICE["classifier"])
        retrain = (
            f"Stages trained before it are kept; retrain this one with "
            f"`model.train(stages=[{stage!r}])`."
            if stage in NON_FINITE_ADVICE
            else ""
        )
        super().__init__(
            f"Training stage {stage!r} stopped: {where} became NaN or infinite. {advice} "
            f"{retrain}".rstrip()
        )
        self.stage = stage
        self.where = where

    def __reduce__(self):
        # rebuilt from its arguments (not its message) when it crosses processes, as from
        # spawned data-parallel workers
        return type(self), (self.stage, self.where)


class StopOnNonFiniteLoss(Callback):
    """Stop a stage with a :class:`NonFiniteLossError` as soon as a training loss is not finite
    (instead of training on, or failing later inside torch with NaN weights)."""

    def __init__(self, stage: str):
        self.stage = stage

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        """Check the step's loss."""
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        finite = not isinstance(loss, torch.Tensor) or bool(torch.isfinite(loss).all())
        # with data parallel training every process stops at the same step, so none is left
        # waiting for the others' gradients
        if not trainer.strategy.reduce_boolean_decision(finite, all=True):
            raise NonFiniteLossError(
                self.stage,
                f"the loss at epoch {trainer.current_epoch}, step {trainer.global_step}",
            )
