"""What generation needs of a trained model, handed to every step as one explicit object.

The steps of generation never reach back into the model class: the model gathers its trained
components (the module with its denoiser, schedule and decoder) and what it knows of its
training cells (the condition space, the reference table, the combinations of conditions, an
encoder for real cells) into a :class:`TrainedModel`, and each step reads what it needs from
there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import anndata as ad
import numpy as np
import pandas as pd
import torch
from torch import nn

from .._constants import DEFAULT_GUIDANCE_SCALES
from ..conditions import ConditionSpace
from ._analogy import TrainingCombinations


class TrainingCells(Protocol):
    """The model's training cells and its encoder, read on demand (and cached by the model):
    a reference table needs a pass over the counts, which a counterfactual of a model with one
    condition never needs."""

    def reference(self) -> pd.DataFrame:
        """One row per training cell: its registered conditions (continuous ones as values),
        library size (``_library``) and batch code (``_batch``)."""

    def combinations(self) -> TrainingCombinations | None:
        """The training cells' combinations of the denoiser's conditions (None with fewer
        than two of them)."""

    def latents(self, indices: np.ndarray) -> torch.Tensor:
        """Standardised latents of the training cells at ``indices``."""

    def encode(self, adata: ad.AnnData) -> torch.Tensor:
        """Standardised latents of cells in another AnnData (counts, batch and registered
        columns as the training cells have them)."""


@dataclass(frozen=True)
class TrainedModel:
    """A trained model's components and training cells, as the generation steps use them.

    Parameters
    ----------
    module
        The model's :class:`~scvi_diffusion.module.ScDiffusionModule` (denoiser, schedule,
        decoder).
    device
        Where the module runs.
    guidance
        ``"classifier"`` or ``"classifier_free"``.
    condition_keys, continuous_keys
        The registered categorical and continuous conditions, in order.
    space
        What the model can be conditioned on.
    cells
        The training cells (reference table, combinations of conditions) and the encoder.
    training_obs
        The training cells' obs, for conditions that were not registered.
    batch_key, batch_categories
        The batch column and its training categories (None without one).
    layer
        The layer setup read counts from (None for ``X``).
    var_names
        The training genes.
    trained_on_demand
        Unregistered conditions whose guidance classifier is already trained.
    record
        What every output's ``uns`` records of the model (guidance, likelihood).
    """

    module: nn.Module
    device: torch.device
    guidance: str
    condition_keys: tuple[str, ...]
    continuous_keys: tuple[str, ...]
    space: ConditionSpace
    cells: TrainingCells
    training_obs: pd.DataFrame
    batch_key: str | None
    batch_categories: pd.Index | None
    layer: str | None
    var_names: pd.Index
    trained_on_demand: frozenset[str]
    record: dict

    @property
    def reference(self) -> pd.DataFrame:
        """The training cells' reference table (see :meth:`TrainingCells.reference`)."""
        return self.cells.reference()

    @property
    def combinations(self) -> TrainingCombinations | None:
        """The training cells' combinations of the denoiser's conditions."""
        return self.cells.combinations()

    @property
    def registered(self) -> list[str]:
        """Every registered condition: the categorical ones, then the continuous ones."""
        return [*self.condition_keys, *self.continuous_keys]

    @property
    def denoiser_conditions(self) -> list[str]:
        """The categorical conditions the denoiser itself takes (classifier-free guidance)."""
        return list(self.condition_keys) if self.guidance == "classifier_free" else []

    @property
    def denoiser_keys(self) -> list[str]:
        """Every condition the denoiser takes, in the order of its label columns: the
        categorical ones, then the continuous ones."""
        return [*self.denoiser_conditions, *self.continuous_keys]

    def default_guidance_scale(self, key: str) -> float:
        """Default scale of a condition: its guidance mode's (on-demand ones use a
        classifier)."""
        if key in self.condition_keys or key in self.continuous_keys:
            return DEFAULT_GUIDANCE_SCALES[self.guidance]
        return DEFAULT_GUIDANCE_SCALES["classifier"]

    def unseen_hint(self) -> str:
        """What the unseen-combination warning suggests, with classifier guidance."""
        if self.guidance != "classifier":
            return ""
        return (
            " Classifier-free guidance composes conditions and generates unseen "
            "combinations more faithfully: ScDiffusion(adata, guidance='classifier_free')."
        )

    def batches_of(self, reference_cells: np.ndarray) -> pd.Categorical | None:
        """The batch labels of reference cells (None without a batch key)."""
        if self.batch_key is None:
            return None
        codes = self.reference["_batch"].to_numpy()[reference_cells]
        return pd.Categorical.from_codes(codes, categories=self.batch_categories)
