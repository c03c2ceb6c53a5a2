"""Per-cell membership scores from a trained model's networks: the denoiser's loss under each
cell's own conditions at the membership timesteps, the autoencoder's reconstruction loss, and
how far a cell's standardised latent lies from the training cells' centre."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from scvi import REGISTRY_KEYS

from .._constants import MEMBERSHIP_NOISE_DRAWS, MEMBERSHIP_TIMESTEP_SHARES
from .._seeding import seeded

if TYPE_CHECKING:
    from ..conditions import ValueRange
    from ..module import LatentDiffusionModule


def own_labels(
    diffusion: LatentDiffusionModule,
    obs: pd.DataFrame,
    categories: Mapping[str, pd.Index],
    value_ranges: Mapping[str, ValueRange],
) -> torch.Tensor | None:
    """The denoiser's labels for cells' own conditions (unknown or missing: not given).

    Parameters
    ----------
    diffusion
        The model's latent diffusion module.
    obs
        The cells' obs, with every registered condition column.
    categories
        The training categories of each categorical condition, in registration order.
    value_ranges
        The training statistics of each continuous condition, in registration order.

    Returns
    -------
    torch.Tensor or None
        One row per cell (on the CPU): the category codes, the denoiser's null label where a
        category is unknown or missing, then the standardised values (NaN where missing).
        None for an unconditional denoiser.
    """
    if not diffusion.is_conditional:
        return None
    null = diffusion.denoiser.null_labels.cpu()
    columns = []
    for i, (key, known) in enumerate(categories.items()):
        codes = pd.Categorical(obs[key], categories=known).codes
        codes = np.where(codes < 0, null[i].item(), codes)
        columns.append(torch.as_tensor(codes, dtype=null.dtype))
    for key, value_range in value_ranges.items():
        values = pd.to_numeric(obs[key], errors="coerce").to_numpy(dtype=np.float64)
        columns.append(torch.as_tensor(value_range.standardize(values), dtype=null.dtype))
    return torch.stack(columns, dim=1)


@torch.inference_mode()
def denoiser_losses(
    diffusion: LatentDiffusionModule,
    latents: torch.Tensor,
    labels: torch.Tensor | None,
    batch_size: int,
    seed: int,
) -> np.ndarray:
    """Each cell's denoising loss at the membership timesteps.

    The noise-prediction error averaged over :data:`MEMBERSHIP_NOISE_DRAWS` noises at each
    share :data:`MEMBERSHIP_TIMESTEP_SHARES` of the schedule's timesteps, in eval mode.

    Parameters
    ----------
    diffusion
        The model's latent diffusion module.
    latents
        The cells' standardised latents, on the module's device.
    labels
        The cells' own labels (:func:`own_labels`), or None.
    batch_size
        Cells scored at once.
    seed
        Seed of the noises.

    Returns
    -------
    numpy.ndarray
        One float64 loss per cell.
    """
    n_timesteps = diffusion.schedule.n_timesteps
    timesteps = [round(share * n_timesteps) for share in MEMBERSHIP_TIMESTEP_SHARES]
    was_training = diffusion.training
    diffusion.eval()
    losses = []
    try:
        for start in range(0, latents.shape[0], batch_size):
            rows = slice(start, start + batch_size)
            # one generator per batch, seeded by its first cell: the same cells, batched
            # alike, get the same noises in every call
            generator = torch.Generator().manual_seed(seed + start)
            batch_labels = None if labels is None else labels[rows].to(latents.device)
            losses.append(
                diffusion.per_cell_loss(
                    latents[rows], batch_labels, timesteps, MEMBERSHIP_NOISE_DRAWS, generator
                ).cpu()
            )
    finally:
        diffusion.train(was_training)
    return torch.cat(losses).numpy().astype(np.float64)


@torch.inference_mode()
def reconstruction_losses(
    autoencoder: torch.nn.Module,
    loader: Iterable[dict[str, torch.Tensor]],
    per_count: bool,
    seed: int,
    device: torch.device,
) -> np.ndarray:
    """Each cell's reconstruction loss, in eval mode.

    Parameters
    ----------
    autoencoder
        The model's autoencoder (scVI's module or the MLP autoencoder).
    loader
        Minibatches of the registered cells, in order.
    per_count
        Divide each cell's loss by its library size (scVI's negative log-likelihood); the MLP
        autoencoder's loss is already per gene.
    seed
        Seed of the autoencoder's random draws.
    device
        The device the autoencoder runs on (whose random state the seed also fixes).

    Returns
    -------
    numpy.ndarray
        One float64 loss per cell.
    """
    was_training = autoencoder.training
    autoencoder.eval()
    losses = []
    try:
        with seeded(seed, device):
            for tensors in loader:
                _, _, loss = autoencoder(tensors, compute_loss=True)
                per_cell = loss.reconstruction_loss["reconstruction_loss"]
                if per_count:
                    library = tensors[REGISTRY_KEYS.X_KEY].sum(dim=1).clamp_min(1.0)
                    per_cell = per_cell / library.to(per_cell)
                losses.append(per_cell.detach().cpu())
    finally:
        autoencoder.train(was_training)
    return torch.cat(losses).numpy().astype(np.float64)


def latent_distances(latents: torch.Tensor) -> np.ndarray:
    """How far the encoder places each cell from the training cells' centre.

    Parameters
    ----------
    latents
        The cells' standardised latents.

    Returns
    -------
    numpy.ndarray
        The norm of each latent (in the training latents' standard deviations), as float64.
    """
    return latents.norm(dim=1).cpu().numpy().astype(np.float64)
