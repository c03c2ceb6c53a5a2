"""Whether cells generated at values of a continuous condition sit where real cells of those
values are: their position along the real cells' value, read from expression."""

from __future__ import annotations

import itertools
import math

import anndata as ad
import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.neighbors import KNeighborsRegressor

from ._expression import _spearman
from ._space import shared_space

N_FOLDS = 5


def _values(adata: ad.AnnData, key: str, name: str) -> np.ndarray:
    if key not in adata.obs:
        raise ValueError(
            f"The {name} cells have no obs column {key!r}; columns: {list(adata.obs.columns)}."
        )
    column = adata.obs[key]
    if is_bool_dtype(column.dtype) or not is_numeric_dtype(column.dtype):
        raise ValueError(f"obs[{key!r}] of the {name} cells is not numeric ({column.dtype}).")
    values = column.to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"obs[{key!r}] of the {name} cells has missing or infinite values.")
    return values


def _fold_fit_size(n_cells: int) -> int:
    """Cells that predict the largest of the folds' held-out cells."""
    return n_cells - math.ceil(n_cells / N_FOLDS)


def value_progress(
    real: ad.AnnData,
    synthetic: ad.AnnData,
    value_key: str,
    n_neighbors: int = 15,
    random_state: int = 0,
) -> pd.DataFrame:
    """Where cells generated at each value of a continuous condition sit along the real cells'.

    In the :func:`shared_space` of the real cells (PCA of log-normalised counts), a
    ``n_neighbors``-nearest-neighbour regression of the real cells' values reads each cell's
    position in the value's own units. The synthetic cells' mean position per requested value
    says whether they sit where real cells of that value do; the real cells' own positions,
    predicted out of fold (5 folds), are the floor.

    Parameters
    ----------
    real : anndata.AnnData
        Real cells with counts and the numeric ``obs[value_key]``.
    synthetic : anndata.AnnData
        Generated cells with the same genes and ``obs[value_key]`` (for example
        ``model.generate(n, interpolate={value_key: (low, high)})``).
    value_key : str
        Obs column with the values.
    n_neighbors : int, default 15
        Neighbours of the regression.
    random_state : int, default 0
        Seed of the folds.

    Returns
    -------
    pandas.DataFrame
        One row per value requested or measured (index ``value``): ``n_cells`` (synthetic
        cells), ``position`` (their mean position; NaN where none was requested),
        ``real_position`` (the real cells' at that value; NaN where none was measured).
        ``attrs``: ``spearman`` (of the requested values against the synthetic cells'
        positions, over the distinct values; 1 = in order) and ``floor_spearman`` (the same
        for the real cells).

    Raises
    ------
    ValueError
        A value column is missing, not numeric or not finite, or the real cells are too few
        for ``n_neighbors`` in a fold (four fifths of them) or have a single value.

    Examples
    --------
    Real cells stand in for generated ones: the bundled PBMCs, with a made-up value that
    follows the expression of one cell type.

    >>> import numpy as np
    >>> import scvi_diffusion
    >>> from scvi_diffusion import metrics
    >>> adata = scvi_diffusion.data.pbmc68k()
    >>> monocyte = (adata.obs["cell_type"] == "CD14+ Monocyte").to_numpy()
    >>> adata.obs["dose"] = np.where(monocyte, 2.0, 0.0)
    >>> progress = metrics.value_progress(adata, adata[::3].copy(), "dose")
    >>> progress.round(2)  # doctest: +NORMALIZE_WHITESPACE
           n_cells  position  real_position
    value
    0.0        197      0.11           0.14
    2.0         37      1.54           1.56

    The regression pulls positions toward the middle of the measured range (monocytes read
    1.54, not 2), for real cells as for generated ones: compare ``position`` with
    ``real_position``, and the order of the values.
    """
    real_values = _values(real, value_key, "real")
    synthetic_values = _values(synthetic, value_key, "synthetic")
    if _fold_fit_size(real.n_obs) < n_neighbors:
        needed = next(n for n in itertools.count(n_neighbors) if _fold_fit_size(n) >= n_neighbors)
        raise ValueError(
            f"Give at least {needed} real cells for n_neighbors={n_neighbors} (got "
            f"{real.n_obs}): the real cells' positions are predicted in {N_FOLDS} folds, each "
            "from the cells of the other folds."
        )
    if np.unique(real_values).size < 2:
        raise ValueError(f"The real cells have a single value of {value_key!r}.")
    space = shared_space(real, synthetic)
    regression = KNeighborsRegressor(n_neighbors=n_neighbors)
    folds = KFold(n_splits=N_FOLDS, shuffle=True, random_state=random_state)
    real_position = cross_val_predict(regression, space.real_pca, real_values, cv=folds)
    position = regression.fit(space.real_pca, real_values).predict(space.synthetic_pca)
    frame = pd.DataFrame({"value": synthetic_values, "position": position})
    generated = frame.groupby("value")["position"].mean()
    real_means = pd.Series(real_position).groupby(real_values).mean()
    index = pd.Index(np.union1d(generated.index, real_means.index), name="value")
    table = pd.DataFrame(
        {
            "n_cells": frame.groupby("value").size().reindex(index, fill_value=0),
            "position": generated.reindex(index),
            "real_position": real_means.reindex(index),
        }
    )
    table.attrs["spearman"] = _spearman(generated.index.to_numpy(), generated.to_numpy())
    table.attrs["floor_spearman"] = _spearman(real_means.index.to_numpy(), real_means.to_numpy())
    return table
