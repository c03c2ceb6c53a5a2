"""The settings every stage of one ``train()`` call runs with, resolved from its arguments."""

from __future__ import annotations

from .._constants import LATENT_DEFAULTS
from .._scvi_internals import get_max_epochs_heuristic
from ._callbacks import WarmedUpEMA
from ._latent_data import latent_step_budget, steps_per_pass
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

    ``sizes`` are the VAE's and the latent stages' minibatch sizes and the denoiser's weight
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
    per_pass = steps_per_pass(n_train, latent_batch_size, n_processes)
    callbacks = runner_kwargs.pop("callbacks", None) or []
    ema = [] if ema_decay is None else [WarmedUpEMA(ema_decay)]
    return StageSettings(
        vae_epochs=vae_epochs,
        latent_budgets={
            stage: latent_step_budget(steps, epochs, per_pass, max_epochs, *LATENT_DEFAULTS[stage])
            for stage, (steps, epochs) in given_budgets.items()
        },
        batch_size=batch_size,
        latent_batch_size=latent_batch_size,
        n_processes=n_processes,
        split_kwargs=split_kwargs,
        plan_kwargs=plan_kwargs,
        callbacks={"vae": callbacks, "diffusion": [*callbacks, *ema], "classifier": callbacks},
        runner_kwargs=runner_kwargs,
    )
