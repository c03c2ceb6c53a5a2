"""The generated cells' obs: their conditions and batch, under names unique to the call."""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .._constants import INTERPOLATION_WEIGHT_KEY
from ..conditions import ConditionSpace
from ._trajectories import Interpolation


def generation_token() -> str:
    """A short random token, new for every ``generate`` call, that its cells' names carry.

    Drawn from the operating system, not from the seeded generator: two calls with the same
    seed give the same cells under different names, so ``anndata.concat`` keeps them apart.
    """
    return secrets.token_hex(4)


def synthetic_names(n_cells: int, token: str) -> pd.Index:
    """New cells' names: ``synthetic-{token}-{i}``, ``i`` counting from 0 in output order."""
    return pd.Index([f"synthetic-{token}-{i}" for i in range(n_cells)])


def counterfactual_names(source_names: Sequence[str], token: str) -> pd.Index:
    """Counterfactuals' names: ``{source cell}-cf-{token}``, or with the cell's position added
    (``{source cell}-cf-{token}-{i}``) when the source names repeat, so they stay unique."""
    source_names = pd.Index(source_names).astype(str)
    if source_names.is_unique:
        return pd.Index([f"{name}-cf-{token}" for name in source_names])
    return pd.Index([f"{name}-cf-{token}-{i}" for i, name in enumerate(source_names)])


def output_obs(
    assignment: pd.DataFrame,
    batches: pd.Categorical | None,
    batch_key: str | None,
    interpolation: Interpolation | None,
    space: ConditionSpace,
    names: pd.Index,
) -> pd.DataFrame:
    """The generated cells' ``obs``, indexed by ``names``: their conditions and batch, and for
    interpolation the weight, source and target instead of the interpolated condition."""
    obs = assignment.copy()
    if batch_key is not None:
        obs[batch_key] = batches
    if interpolation is not None:
        n_cells = obs.shape[0]
        obs[interpolation.key] = pd.Categorical(
            [None] * n_cells, categories=space.categories_of(interpolation.key)
        )
        obs[INTERPOLATION_WEIGHT_KEY] = interpolation.weights(n_cells).astype(np.float64)
        obs["interpolation_source"] = pd.Categorical([interpolation.source] * n_cells)
        obs["interpolation_target"] = pd.Categorical([interpolation.target] * n_cells)
    # categories without generated cells trip scanpy (rank_genes_groups needs cells in
    # every group); anndata.concat unions the categories with the real cells' anyway
    for column in obs.select_dtypes("category"):
        obs[column] = obs[column].cat.remove_unused_categories()
    obs.index = pd.Index(names)
    return obs
