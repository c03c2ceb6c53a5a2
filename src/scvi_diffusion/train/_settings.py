"""The settings every stage of one ``train()`` call runs with, resolved from its arguments."""

from __future__ import annotations

from .._constants import LATENT_BATCH_SIZES
from .._scvi_internals import get_max_epochs_heuristic
from ._callbacks import WarmedUpEMA
from ._latent_data import stage_step_budget
from ._stages import StageSettings, n_training_cells


def stage_settings(
    *,
    n_cells: int,
    max_epochs: int | None,
    vae_epochs: int | None,
    given_budgets: dict[str, tuple[int | None, int | None]],
    sizes: tuple[int, int, float | None],
    n_processes: int,
    split_kwargs: dict,
    plan_kwargs: dict[str, dict],
    runner_kwargs: dict,
) -> StageSettings:
    """The stages' settings from ``train()``'s checked arguments.

    ``sizes`` are the VAE's and the latent stages' minibatch sizes (None: each latent stage's
    default, :data:`~scvi_diffusion._constants.LATENT_BATCH_SIZES`) and the denoiser's weight
    average decay (None: no average). The VAE's epochs default to scvi-tools' heuristic for
    ``n_cells``; each latent stage's budget comes from its given steps or epochs (or its
    default), in steps of passes over the training cells of ``split_kwargs``; every stage is
    capped at ``max_epochs`` passes. The callbacks in ``runner_kwargs`` go to every stage,
    with the weight average added to the denoiser's.
    """
    batch_size, latent_batch_size, ema_decay = sizes
    vae_epochs = vae_epochs or get_max_epochs_heuristic(n_cells)
    if max_epochs is not None:
        vae_epochs = min(vae_epochs, max_epochs)
    n_train = n_training_cells(split_kwargs["train_size"], n_cells)
    latent_batch_sizes = {
        stage: latent_batch_size or LATENT_BATCH_SIZES[stage] for stage in given_budgets
    }
    callbacks = runner_kwargs.pop("callbacks", None) or []
    ema = [] if ema_decay is None else [WarmedUpEMA(ema_decay)]
    return StageSettings(
        vae_epochs=vae_epochs,
        latent_budgets={
            stage: stage_step_budget(
                stage,
                steps,
                epochs,
                n_train,
                latent_batch_sizes[stage],
                n_processes,
                max_epochs,
            )
            for stage, (steps, epochs) in given_budgets.items()
        },
        batch_size=batch_size,
        latent_batch_sizes=latent_batch_sizes,
        n_processes=n_processes,
        split_kwargs=split_kwargs,
        plan_kwargs=plan_kwargs,
        callbacks={"vae": callbacks, "diffusion": [*callbacks, *ema], "classifier": callbacks},
        runner_kwargs=runner_kwargs,
    )
