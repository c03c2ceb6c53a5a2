"""Counterfactuals of real cells: the source cells, checked, and what each keeps of them.

``generate(source=cells, conditions=...)`` changes the requested conditions of every source
cell and keeps the rest: its other registered conditions, its batch and its library size. The
functions here check the source cells and take those kept values from them without touching
the user's AnnData; the model encodes them (``_generation_mixin.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

from .._validation import row_sums, validate_counts
from ._conditions import ConditionSpace
from ._genes import check_genes


@dataclass(frozen=True)
class SourceCells:
    """The source cells of a counterfactual, checked, as the model needs them."""

    names: pd.Index
    """The source cells' ``obs_names``."""
    counts: sparse.csr_matrix
    """Their counts over the training genes."""
    kept: pd.DataFrame
    """The registered conditions they keep, with the training categories."""
    own: pd.DataFrame
    """The source cells' own values of the requested conditions, where the model knows them
    (missing where the column is absent or the value unknown)."""
    batch: pd.Categorical | None
    """Their batches, with the training categories (None without a batch key)."""

    @property
    def library(self) -> np.ndarray:
        """Library size of every source cell (at least 1)."""
        return np.maximum(row_sums(self.counts), 1.0)

    @property
    def n_cells(self) -> int:
        """Number of source cells."""
        return len(self.names)

    def registrable(self, layer: str | None, batch_key: str | None, conditions: pd.DataFrame):
        """A new AnnData of the source cells that a registration can be transferred to: their
        counts where setup read them, the batch and every registered condition (``conditions``,
        one known value per cell)."""
        obs = conditions.copy()
        obs.index = self.names.astype(str)
        if batch_key is not None:
            obs[batch_key] = self.batch
        adata = ad.AnnData(X=self.counts, obs=obs)
        if layer is not None:
            adata.layers[layer] = self.counts
        return adata


def _known(
    values: pd.Series, categories: pd.Index, key: str, names: pd.Index, what: str
) -> pd.Categorical:
    """Source cells' values of ``key`` as a categorical with the training categories; a
    ValueError that names the cells and the valid values unless every one is known."""
    labels = pd.Categorical(values.to_numpy(), categories=categories)
    unknown = pd.isna(labels)
    if unknown.any():
        values = values[unknown]
        shown = sorted({str(v) for v in values.unique()})[:5]
        raise ValueError(
            f"{int(unknown.sum())} source cell(s) (e.g. {list(names[unknown][:3])}) have {what} "
            f"{key!r} values the model does not know: {shown}. Known values: "
            f"{list(categories)}. Counterfactuals keep each cell's {key!r}; request a value for "
            f"it in `conditions` to change it instead."
        )
    return labels


def source_cells(
    source,
    var_names: pd.Index,
    layer: str | None,
    space: ConditionSpace,
    changed: Sequence[str],
    batch_key: str | None,
    batch_categories: pd.Index | None,
) -> SourceCells:
    """Check the source AnnData of a counterfactual and take what its cells keep.

    Parameters
    ----------
    source
        The user's AnnData, with cells (registered or not, a view or not; never changed).
    var_names
        The training genes, in order.
    layer
        The layer with counts at setup (None for ``X``).
    space
        The model's condition space.
    changed
        The conditions whose values are requested (changed); every other registered condition
        is kept from the source cells.
    batch_key, batch_categories
        The batch column and its training categories (None without one).
    """
    check_genes(var_names, source)
    if layer is not None and layer not in source.layers:
        raise ValueError(
            f"`source` has no layer {layer!r}, where the model was set up to read counts; "
            f"its layers: {list(source.layers)}."
        )
    matrix = source.X if layer is None else source.layers[layer]
    counts = sparse.csr_matrix(matrix, dtype=np.float32)
    validate_counts(ad.AnnData(X=counts), None)
    names = pd.Index(source.obs_names)

    def column(key: str, what: str) -> pd.Series:
        if key not in source.obs:
            raise ValueError(
                f"`source` has no obs column {key!r}: counterfactuals keep each cell's {what} "
                f"{key!r}, so the source cells must carry it (or request a value for it in "
                "`conditions`)."
            )
        return source.obs[key]

    kept = pd.DataFrame(index=pd.RangeIndex(source.n_obs))
    for key in space.categories:
        if key not in changed:
            kept[key] = _known(
                column(key, "condition"), space.categories[key], key, names, "condition"
            )
    own = pd.DataFrame(index=pd.RangeIndex(source.n_obs))
    for key in changed:
        values = source.obs[key] if key in source.obs else pd.Series([None] * source.n_obs)
        own[key] = pd.Categorical(values.to_numpy(), categories=space.categories_of(key))
    batch = None
    if batch_key is not None:
        batch = _known(column(batch_key, "batch"), batch_categories, batch_key, names, "batch")
    return SourceCells(names, counts, kept, own, batch)


def check_counterfactual_arguments(n, interpolate, source) -> None:
    """``generate``'s arguments that do not go with ``source``, and the source's type."""
    if not isinstance(source, ad.AnnData):
        raise TypeError(f"`source` must be an AnnData of real cells, got {type(source).__name__}.")
    if source.n_obs == 0:
        raise ValueError("`source` has no cells; give at least one cell to change.")
    if n is not None and n != source.n_obs:
        raise ValueError(
            f"Counterfactuals make one cell per source cell ({source.n_obs}); leave `n` out "
            f"with `source`, got n={n!r}."
        )
    if interpolate is not None:
        raise ValueError(
            "`interpolate` and `source` do not go together: interpolation starts from training "
            "cells of its source category. Give one of them."
        )


def inversion_weights(values: pd.Categorical) -> np.ndarray | None:
    """One-hot rows of the source cells' own values of a condition, or None when some
    source cell's value is not known (its inversion then ignores the condition)."""
    codes = np.asarray(values.codes)
    if (codes < 0).any():
        return None
    weights = np.zeros((len(codes), len(values.categories)), dtype=np.float32)
    weights[np.arange(len(codes)), codes] = 1.0
    return weights
