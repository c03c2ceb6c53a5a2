"""Mixing of real and synthetic cells: integration LISI (iLISI).

Implemented here rather than taken from scib-metrics, whose LISI would pull in jax, jaxlib
and chex for this one function.
"""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors

_N_BISECTIONS = 50


def _entropy(shifted_sq_dist: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Entropy (natural log) of each row's weights ``exp(-d² beta)``, normalised."""
    weights = np.exp(-shifted_sq_dist * beta[:, None])
    total = weights.sum(axis=1)
    return np.log(total) + beta * (shifted_sq_dist * weights).sum(axis=1) / total


def _gaussian_weights(sq_dist: np.ndarray, perplexity: float) -> np.ndarray:
    """Per-row normalised weights ``exp(-d² beta)`` whose entropy is ``log(perplexity)``.

    ``beta`` is found by bisection on ``log(beta)``, for all rows at once.
    """
    # Subtracting each row's nearest distance changes no normalised weight but keeps the
    # largest weight at 1, so the exponentials never all underflow.
    shifted = sq_dist - sq_dist.min(axis=1, keepdims=True)
    scale = np.maximum(shifted.mean(axis=1), 1e-12)
    low = np.log(1e-10 / scale)
    high = np.log(1e10 / scale)
    target = np.log(perplexity)
    for _ in range(_N_BISECTIONS):
        middle = (low + high) / 2
        # Entropy falls as beta grows: too high means beta must grow.
        too_spread = _entropy(shifted, np.exp(middle)) > target
        low = np.where(too_spread, middle, low)
        high = np.where(too_spread, high, middle)
    weights = np.exp(-shifted * np.exp((low + high) / 2)[:, None])
    return weights / weights.sum(axis=1, keepdims=True)


def ilisi(
    x_real: np.ndarray,
    x_synthetic: np.ndarray,
    n_neighbors: int = 90,
    perplexity: float = 30.0,
    scale: bool = True,
) -> float:
    """Integration LISI of real and synthetic cells on one kNN graph of the pooled cells.

    Each cell's neighbours (itself excluded) get Gaussian weights with a per-cell width set by
    ``perplexity``; the inverse Simpson index of the two sources under these weights is the
    cell's LISI (1: only one source nearby, 2: both sources in equal weight).

    Parameters
    ----------
    x_real, x_synthetic : numpy.ndarray
        Points, cells x dimensions (e.g. PCA coordinates).
    n_neighbors : int, default 90
        Neighbours per cell (at most the number of cells minus 1).
    perplexity : float, default 30.0
        Effective number of neighbours (at most a third of ``n_neighbors``).
    scale : bool, default True
        Map the median LISI from [1, 2] to [0, 1].

    Returns
    -------
    float
        The median LISI over all cells; scaled, 0 means no mixing and 1 perfect mixing. With
        unequal set sizes the attainable maximum is below 1.

    Raises
    ------
    ValueError
        The sets are not 2-D with the same number of columns, or either is empty.

    Examples
    --------
    PCA coordinates of the bundled PBMCs; two halves of the real cells stand in for real and
    synthetic cells and mix well:

    >>> import scanpy as sc
    >>> import scvi_diffusion
    >>> from scvi_diffusion import metrics
    >>> adata = scvi_diffusion.data.pbmc68k()
    >>> sc.pp.normalize_total(adata, target_sum=1e4)
    >>> sc.pp.log1p(adata)
    >>> sc.pp.pca(adata, n_comps=30)
    >>> first, second = metrics.stratified_split(adata, "cell_type", test_size=0.5)
    >>> round(metrics.ilisi(first.obsm["X_pca"], second.obsm["X_pca"]), 2)
    0.94

    Two cell types do not mix at all; unscaled, the LISI is 1 (one source nearby):

    >>> monocytes = adata[adata.obs["cell_type"] == "CD14+ Monocyte"].obsm["X_pca"]
    >>> b_cells = adata[adata.obs["cell_type"] == "CD19+ B"].obsm["X_pca"]
    >>> round(metrics.ilisi(monocytes, b_cells), 2)
    0.0
    >>> round(metrics.ilisi(monocytes, b_cells, scale=False), 2)
    1.0
    """
    x_real = np.asarray(x_real, dtype=np.float64)
    x_synthetic = np.asarray(x_synthetic, dtype=np.float64)
    if x_real.ndim != 2 or x_synthetic.ndim != 2 or x_real.shape[1] != x_synthetic.shape[1]:
        raise ValueError(
            "`x_real` and `x_synthetic` must be 2-D arrays with the same number of columns, "
            f"got shapes {x_real.shape} and {x_synthetic.shape}."
        )
    if x_real.shape[0] < 1 or x_synthetic.shape[0] < 1:
        raise ValueError("`x_real` and `x_synthetic` each need at least one cell.")
    points = np.vstack([x_real, x_synthetic])
    source = np.repeat([0, 1], [x_real.shape[0], x_synthetic.shape[0]])
    k = min(n_neighbors, points.shape[0] - 1)
    # Without a query, kneighbors leaves each cell out of its own neighbours.
    distances, neighbours = NearestNeighbors(n_neighbors=k).fit(points).kneighbors()
    weights = _gaussian_weights(distances**2, min(perplexity, k / 3))
    synthetic_share = (weights * source[neighbours]).sum(axis=1)
    simpson = synthetic_share**2 + (1 - synthetic_share) ** 2
    lisi = float(np.median(1.0 / simpson))
    n_sources = 2
    return (lisi - 1) / (n_sources - 1) if scale else lisi
