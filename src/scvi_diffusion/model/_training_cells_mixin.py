"""The training cells as the latent stages and generation see them."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd
import torch
from scvi import REGISTRY_KEYS

from .._constants import (
    ENCODING_VALUES_PER_BATCH,
    LATENT_BATCH_SIZES,
    LATENT_PLAN_DEFAULTS,
    condition_registry_key,
    value_spread_key,
)
from .._scvi_internals import forget_transferred_registration
from .._validation import row_sums
from ..conditions import numeric_values, vicinal_spreads
from ..generation import TrainingCombinations
from ..module import ConditionClassifiersModule
from ..train._latent_data import register_latents, stage_step_budget
from ..train._stages import ModuleHost

logger = logging.getLogger("scvi").getChild("diffusion")


@contextlib.contextmanager
def quiet_transfer():
    """Transfer the setup to new cells without scvi-tools' "attempting to transfer" message or
    its warning about categories with few cells (meant for training data: a few new cells are
    no problem)."""
    scvi_logger = logging.getLogger("scvi")
    level = scvi_logger.level
    scvi_logger.setLevel(max(scvi_logger.getEffectiveLevel(), logging.WARNING))
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*has fewer than 3 cells")
            yield
    finally:
        scvi_logger.setLevel(level)


class TrainingCellsMixin:
    """The training cells in latent space and as references for generation.

    Their standardised latents (what the latent stages train on, where interpolation starts,
    what a classifier trained on demand learns from) and their conditions, library sizes and
    batches (the reference table every generated cell draws from).
    """

    def _latent_training_data(self, standardize_anew: bool):
        """Standardised latents and conditions of the training cells, registered for training.

        With ``standardize_anew=False`` the standardisation is kept, so retraining one latent
        stage keeps the latent space the other stage was trained in.
        """
        standardized = self._standardized_latents(standardize_anew=standardize_anew)
        conditions = self._training_conditions(self.condition_keys)
        for key in self.continuous_condition_keys:
            # float columns: registered as values (see register_latents)
            values = self._value_range(key).standardize(self._training_values(key))
            conditions[key] = values
            for side, spread in vicinal_spreads(values).items():
                conditions[value_spread_key(key, side)] = spread.astype(np.float32)
        return register_latents(standardized.cpu().numpy(), conditions)

    def _training_values(self, key: str) -> np.ndarray:
        """A continuous condition's values in the training cells."""
        return numeric_values(self.adata.obs, key)

    @property
    def _encoding_batch_size(self) -> int:
        """Cells encoded at once: each minibatch is densified, so at most ~8M values."""
        return int(min(4096, max(128, ENCODING_VALUES_PER_BATCH // self.adata.n_vars)))

    def _standardized_latents(
        self,
        indices: np.ndarray | None = None,
        standardize_anew: bool = False,
        adata=None,
    ) -> torch.Tensor:
        """Encode cells (all training cells by default, or those of ``adata``) and standardise
        their latents as the diffusion stage sees them; ``standardize_anew`` first fits the
        standardisation."""
        latents = torch.as_tensor(
            self.get_latent_representation(
                adata=adata, indices=indices, batch_size=self._encoding_batch_size
            )
        )
        diffusion = self.module.diffusion
        if standardize_anew:
            diffusion.set_standardization(latents.to(diffusion.latent_loc))
        return diffusion.standardize(latents.to(self.device))

    def _standardized_source_latents(self, adata: ad.AnnData) -> torch.Tensor:
        """Standardised latents of cells in another AnnData (``generate(source=...)``).

        The setup is transferred to it as scvi-tools does for new data, without its "attempting
        to transfer" message or its warning about categories with few cells, and the
        registration is dropped afterwards, so that repeated calls keep no reference to their
        cells.
        """
        try:
            with quiet_transfer():
                return self._standardized_latents(adata=adata)
        finally:
            forget_transferred_registration(self, adata)

    def _training_conditions(self, keys: Sequence[str]) -> pd.DataFrame:
        """Registered conditions of the training cells, with the training categories."""
        return pd.DataFrame(
            {k: pd.Categorical(self.adata.obs[k], categories=self._categories(k)) for k in keys},
            index=self.adata.obs_names,
        )

    def _reference(self) -> pd.DataFrame:
        """Library size, batch and registered conditions (continuous ones as values) of every
        training cell."""
        if self._reference_table is None:
            counts = self.adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY)
            library = row_sums(counts)
            batch = np.asarray(
                self.adata_manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY)
            ).ravel()
            table = self._training_conditions(self.condition_keys)
            for key in self.continuous_condition_keys:
                table[key] = self._training_values(key)
            table["_library"] = np.maximum(library, 1.0)
            table["_batch"] = batch.astype(np.int64)
            self._reference_table = table.reset_index(drop=True)
        return self._reference_table

    def _training_combinations(self) -> TrainingCombinations | None:
        """The training cells' combinations of the denoiser's conditions (classifier-free
        guidance of two or more), counted once per model; None otherwise."""
        if self.guidance != "classifier_free" or len(self.condition_keys) < 2:
            return None
        if self._combinations is None:
            keys = self.condition_keys
            self._combinations = TrainingCombinations.of(self._reference()[keys], keys)
        return self._combinations

    def _training_cells(self) -> _TrainingCellsOf:
        """This model's training cells as generation reads them."""
        return _TrainingCellsOf(self)

    def _train_auxiliary_classifier(
        self, key: str, categories: pd.Index, progress_bar: bool = True
    ) -> ConditionClassifiersModule:
        """Guidance classifier for an obs column that was not registered, trained on demand."""
        logger.warning(
            f"{key!r} is not a registered condition; training a guidance classifier for it now. "
            f"Register it with `setup_anndata(..., condition_keys=[{key!r}])` to train it with "
            "the model and save it."
        )
        guidance = self.module.guidance
        module = ConditionClassifiersModule(
            self.module.n_latent,
            [len(categories)],
            [condition_registry_key(key)],
            horizon=guidance.horizon,
            n_timesteps=guidance.schedule.n_timesteps,
        )
        module.schedule = guidance.schedule
        labels = pd.Categorical(self.adata.obs[key], categories=categories)
        keep = np.flatnonzero(~pd.isna(labels))
        standardized = self._standardized_latents(indices=keep).cpu().numpy()
        obs = pd.DataFrame({key: labels[keep]}, index=self.adata.obs_names[keep])
        batch_size = LATENT_BATCH_SIZES["classifier"]
        budget = stage_step_budget("classifier", None, None, len(keep), batch_size)
        stage_history = self._run_latent_stage(
            f"classifier_{key}",
            module,
            register_latents(standardized, obs),
            budget,
            batch_size,
            LATENT_PLAN_DEFAULTS["classifier"],
            {},
            # the runner moves, and marks trained, the model it is given: here the classifier
            host=ModuleHost(module, self.adata),
            progress_bar=progress_bar,
        )
        self.history_ = {**(self.history_ or {}), **stage_history}
        module.to(self.device).eval()
        return module


class _TrainingCellsOf:
    """A model's training cells and encoder, as
    :class:`~scvi_diffusion.generation.TrainingCells`: each read on demand, cached by the
    model."""

    def __init__(self, model: TrainingCellsMixin):
        self._model = model

    def reference(self) -> pd.DataFrame:
        return self._model._reference()

    def combinations(self) -> TrainingCombinations | None:
        return self._model._training_combinations()

    def latents(self, indices: np.ndarray) -> torch.Tensor:
        return self._model._standardized_latents(indices=indices)

    def encode(self, adata: ad.AnnData) -> torch.Tensor:
        return self._model._standardized_source_latents(adata)
