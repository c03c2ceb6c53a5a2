"""Training data of the latent stages: in-memory latents served as a fixed number of steps.

The latent stages train small networks on a few numbers per cell, so an optimiser step costs
about as little as the per-epoch machinery of a training loop (loaders, callbacks, logging). They
are therefore measured in optimiser steps: each Lightning epoch of a latent stage holds many
steps, drawn from back-to-back shuffled passes over the cells, and the stage ends after its step
budget whatever the number of cells.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
import torch
from pandas.api.types import is_float_dtype
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import CategoricalObsField, LayerField, NumericalObsField
from scvi.dataloaders import DeviceBackedDataSplitter
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .._constants import (
    LATENT_DEFAULTS,
    condition_registry_key,
    continuous_registry_key,
)

LOSS_CURVE_POINTS = 50
"""Lightning epochs a latent stage is cut into: the points of its loss curve in ``history``."""


@dataclass(frozen=True)
class StepBudget:
    """How a latent stage's optimiser steps are laid out as Lightning epochs.

    Attributes
    ----------
    steps
        Optimiser steps of the stage (per process, which is the same as in total: data
        parallel processes step together).
    steps_per_epoch
        Steps of one Lightning epoch: one point of the loss curve.
    """

    steps: int
    steps_per_epoch: int

    @property
    def epochs(self) -> int:
        """Lightning epochs; the last one may stop short of ``steps_per_epoch``."""
        return math.ceil(self.steps / self.steps_per_epoch)

    @classmethod
    def for_steps(cls, steps: int, steps_per_pass: int) -> StepBudget:
        """Lay ``steps`` out in about :data:`LOSS_CURVE_POINTS` epochs of at least one pass
        over the cells (``steps_per_pass`` steps) each."""
        per_epoch = max(steps_per_pass, math.ceil(steps / LOSS_CURVE_POINTS))
        return cls(steps=steps, steps_per_epoch=min(per_epoch, steps))


def steps_per_pass(n_cells: int, batch_size: int, n_processes: int = 1) -> int:
    """Optimiser steps of one pass over ``n_cells``: with data parallel training each of
    ``n_processes`` takes its own minibatch at every step, so a pass has fewer steps."""
    return max(1, math.ceil(n_cells / (batch_size * n_processes)))


class ShuffledPassesSampler(DistributedSampler):
    """Minibatches of cell indices from back-to-back shuffled passes over the cells.

    Each Lightning epoch yields ``n_batches`` full minibatches; every cell is drawn once per pass,
    and a new permutation starts where the last one ended. Each data parallel process draws its
    own stream (seeded by its rank), so every process takes a full minibatch at every step. A
    subclass of :class:`~torch.utils.data.DistributedSampler` so that Lightning leaves it as it
    is under data parallel training and tells it the epoch.

    Parameters
    ----------
    n_cells
        Cells to draw from.
    batch_size
        Cells per minibatch (at most ``n_cells``).
    n_batches
        Minibatches per epoch.
    seed
        Seed of the permutations; the epoch and the rank are added to it.
    num_replicas, rank
        Data parallel processes and this one's rank.
    """

    def __init__(
        self,
        n_cells: int,
        batch_size: int,
        n_batches: int,
        seed: int,
        num_replicas: int = 1,
        rank: int = 0,
    ):
        super().__init__(range(n_cells), num_replicas=num_replicas, rank=rank, seed=seed)
        self.n_cells = n_cells
        self.batch_size = min(batch_size, n_cells)
        self.n_batches = n_batches

    def __iter__(self):
        generator = torch.Generator()
        generator.manual_seed(self.seed + 1_000_003 * self.epoch + 7_919 * self.rank)
        n_needed = self.n_batches * self.batch_size
        passes = [
            torch.randperm(self.n_cells, generator=generator)
            for _ in range(math.ceil(n_needed / self.n_cells))
        ]
        yield from torch.cat(passes)[:n_needed].view(self.n_batches, self.batch_size)

    def __len__(self) -> int:
        return self.n_batches


class TensorDictDataset(Dataset):
    """Rows of a dict of equally long tensors; indexed by a tensor of rows, it returns the
    minibatch at once."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors

    def __getitem__(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        return {key: value[rows] for key, value in self.tensors.items()}

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))


class LatentDataSplitter(DeviceBackedDataSplitter):
    """scvi-tools' :class:`~scvi.dataloaders.DeviceBackedDataSplitter` whose training loader
    serves a step budget.

    The split into training and validation cells is scvi-tools' own; the training loader yields
    ``budget.steps_per_epoch`` minibatches per epoch from a :class:`ShuffledPassesSampler`. The
    latents stay in memory on the CPU (a few numbers per cell) and each minibatch is moved to the
    training device by Lightning.

    Parameters
    ----------
    adata_manager
        Registered latents and conditions.
    budget
        The stage's steps and their layout in epochs.
    batch_size
        Cells per minibatch.
    train_size, validation_size
        As in :class:`~scvi.dataloaders.DataSplitter`.
    **kwargs
        Further keyword arguments of :class:`~scvi.dataloaders.DataSplitter`.
    """

    def __init__(
        self,
        adata_manager: AnnDataManager,
        budget: StepBudget,
        batch_size: int,
        train_size: float = 1.0,
        validation_size: float | None = None,
        **kwargs,
    ):
        # every training minibatch is full, so the split needs no small-last-batch adjustment
        kwargs.pop("distributed_sampler", None)
        kwargs.pop("drop_last", None)
        super().__init__(
            adata_manager,
            train_size=train_size,
            validation_size=validation_size,
            accelerator="cpu",
            batch_size=batch_size,
            shuffle=True,
            drop_last=True,
            **kwargs,
        )
        self.budget = budget
        # drawn from torch's random state now, so a seeded training is reproducible
        self.seed = int(torch.randint(0, 2**31 - 1, ()).item())

    def train_dataloader(self) -> DataLoader:
        """Loader of ``budget.steps_per_epoch`` full minibatches per epoch."""
        dataset = TensorDictDataset(self.train_tensor_dict)
        trainer = getattr(self, "trainer", None)
        sampler = ShuffledPassesSampler(
            len(dataset),
            self.batch_size,
            self.budget.steps_per_epoch,
            seed=self.seed,
            num_replicas=trainer.world_size if trainer is not None else 1,
            rank=trainer.global_rank if trainer is not None else 0,
        )
        return DataLoader(dataset, sampler=sampler, batch_size=None)


def latent_step_budget(
    steps: int | None,
    epochs: int | None,
    per_pass: int,
    max_epochs: int | None,
    default_steps: int,
    pass_cap: int,
) -> StepBudget:
    """A latent stage's budget from its arguments.

    Parameters
    ----------
    steps, epochs
        The stage's budget as given, in steps or in passes over the cells (at most one).
    per_pass
        Steps of one pass over the cells.
    max_epochs
        Cap in passes over the cells, on every stage.
    default_steps
        Steps without ``steps`` or ``epochs``.
    pass_cap
        Passes over the cells the default is capped at, so tiny data is not memorised.
    """
    if steps is None:
        steps = (
            epochs * per_pass if epochs is not None else min(default_steps, pass_cap * per_pass)
        )
    if max_epochs is not None:
        steps = min(steps, max_epochs * per_pass)
    return StepBudget.for_steps(steps, per_pass)


def stage_step_budget(
    stage: str,
    steps: int | None,
    epochs: int | None,
    n_cells: int,
    batch_size: int,
    n_processes: int = 1,
    max_epochs: int | None = None,
) -> StepBudget:
    """The budget of the latent stage ``stage`` (``"diffusion"`` or ``"classifier"``) on
    ``n_cells`` training cells in minibatches of ``batch_size``: its given ``steps`` or
    ``epochs``, or its default (:data:`~scvi_diffusion._constants.LATENT_DEFAULTS`): the cells
    it draws by default, in minibatches of ``batch_size`` (fewer where fewer cells fill one), at
    most its most steps and its cap of passes."""
    most_steps, cells_drawn, pass_cap = LATENT_DEFAULTS[stage]
    cells_per_step = min(batch_size, n_cells)
    default_steps = min(most_steps, math.ceil(cells_drawn / cells_per_step))
    per_pass = steps_per_pass(n_cells, batch_size, n_processes)
    return latent_step_budget(steps, epochs, per_pass, max_epochs, default_steps, pass_cap)


def register_latents(latents: np.ndarray, obs: pd.DataFrame) -> AnnDataManager:
    """Standardised latents and their conditions (``obs``), registered as a small in-memory
    AnnData for a latent stage: float columns are continuous conditions (standardised values),
    the others categorical."""
    latent_adata = ad.AnnData(X=latents.astype(np.float32), obs=obs)
    fields = [
        LayerField(REGISTRY_KEYS.X_KEY, None, is_count_data=False),
        *[
            NumericalObsField(continuous_registry_key(k), k)
            if is_float_dtype(obs[k].dtype)
            else CategoricalObsField(condition_registry_key(k), k)
            for k in obs.columns
        ],
    ]
    manager = AnnDataManager(fields=fields)
    with warnings.catch_warnings():
        # small categories are expected (rare cell types) and already reported at setup
        warnings.simplefilter("ignore", UserWarning)
        manager.register_fields(latent_adata)
    return manager
