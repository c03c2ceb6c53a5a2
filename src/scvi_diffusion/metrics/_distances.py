"""Distances between two point clouds (for example PCA coordinates of real and synthetic cells)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import ot
from scipy.spatial.distance import cdist, pdist

BANDWIDTH_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)


def _as_points(x: np.ndarray, name: str, min_points: int = 1) -> np.ndarray:
    points = np.asarray(x, dtype=np.float64)
    if points.ndim != 2:
        raise ValueError(
            f"`{name}` must be a 2-D array (cells x dimensions), got {points.ndim}-D."
        )
    if points.shape[0] < min_points:
        raise ValueError(f"`{name}` needs at least {min_points} points, got {points.shape[0]}.")
    return points


def _subsample(points: np.ndarray, max_cells: int, rng: np.random.Generator) -> np.ndarray:
    if points.shape[0] <= max_cells:
        return points
    return points[rng.choice(points.shape[0], size=max_cells, replace=False)]


def median_bandwidths(
    reference: np.ndarray, max_cells: int = 2000, random_state: int = 0
) -> tuple[float, ...]:
    """RBF bandwidths: the median pairwise distance among ``reference`` points times
    :data:`BANDWIDTH_SCALES`.
    """
    points = _as_points(reference, "reference", min_points=2)
    points = _subsample(points, max_cells, np.random.default_rng(random_state))
    median = float(np.median(pdist(points)))
    # Fall back to unit scale when the reference points all coincide.
    median = median if median > 0 else 1.0
    return tuple(median * scale for scale in BANDWIDTH_SCALES)


def _mean_off_diagonal(kernel: np.ndarray) -> float:
    n = kernel.shape[0]
    return float((kernel.sum() - np.trace(kernel)) / (n * (n - 1)))


def mmd_rbf(
    x: np.ndarray,
    y: np.ndarray,
    bandwidths: Sequence[float] | None = None,
    reference: np.ndarray | None = None,
    max_cells: int = 2000,
    random_state: int = 0,
) -> dict[str, float | tuple[float, ...]]:
    """Maximum mean discrepancy with Gaussian (RBF) kernels.

    The unbiased estimate of MMD² for each kernel ``exp(-||a - b||² / (2 h²))``, averaged over
    the bandwidths ``h``. It is about 0 for samples of one distribution whatever their size
    (and may be slightly negative).

    Parameters
    ----------
    x, y : numpy.ndarray
        Points, cells x dimensions (e.g. real and synthetic PCA coordinates), at least 2 each.
    bandwidths : sequence of float, optional
        Kernel bandwidths ``h``. Default: the median pairwise distance among ``reference``
        points times (0.25, 0.5, 1, 2, 4), so they depend only on the reference and figures
        for different ``y`` stay comparable.
    reference : numpy.ndarray, optional
        Points that set the default bandwidths; default ``x``.
    max_cells : int, default 2000
        Each set (and the reference) is subsampled to at most this many points.
    random_state : int, default 0
        Seed of the subsampling.

    Returns
    -------
    dict
        ``{"mmd": float, "bandwidths": tuple of float}``: the MMD² estimate and the
        bandwidths used.

    Raises
    ------
    ValueError
        ``x`` or ``y`` is not 2-D or has fewer than 2 points, they differ in dimensions, or a
        bandwidth is not positive.

    Examples
    --------
    PCA coordinates of the bundled PBMCs; two halves of the real cells stand in for real and
    synthetic cells:

    >>> import scanpy as sc
    >>> import scvi_diffusion
    >>> from scvi_diffusion import metrics
    >>> adata = scvi_diffusion.data.pbmc68k()
    >>> sc.pp.normalize_total(adata, target_sum=1e4)
    >>> sc.pp.log1p(adata)
    >>> sc.pp.pca(adata, n_comps=30)
    >>> first, second = metrics.stratified_split(adata, "cell_type", test_size=0.5)
    >>> result = metrics.mmd_rbf(first.obsm["X_pca"], second.obsm["X_pca"])
    >>> abs(result["mmd"]) < 0.001  # about 0: one distribution
    True
    >>> len(result["bandwidths"])
    5

    Two cell types are far apart. Keep the bandwidths of the first comparison (or pass the
    same ``reference``) so the figures are comparable:

    >>> monocytes = adata[adata.obs["cell_type"] == "CD14+ Monocyte"].obsm["X_pca"]
    >>> b_cells = adata[adata.obs["cell_type"] == "CD19+ B"].obsm["X_pca"]
    >>> round(metrics.mmd_rbf(monocytes, b_cells, bandwidths=result["bandwidths"])["mmd"], 2)
    0.32
    """
    x = _as_points(x, "x", min_points=2)
    y = _as_points(y, "y", min_points=2)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"`x` and `y` differ in dimensions: {x.shape[1]} and {y.shape[1]}.")
    if bandwidths is None:
        bandwidths = median_bandwidths(
            x if reference is None else reference, max_cells=max_cells, random_state=random_state
        )
    bandwidths = tuple(float(h) for h in bandwidths)
    if not bandwidths or min(bandwidths) <= 0:
        raise ValueError(f"`bandwidths` must be positive numbers, got {bandwidths}.")
    rng = np.random.default_rng(random_state)
    x = _subsample(x, max_cells, rng)
    y = _subsample(y, max_cells, rng)
    d_xx = cdist(x, x, "sqeuclidean")
    d_yy = cdist(y, y, "sqeuclidean")
    d_xy = cdist(x, y, "sqeuclidean")
    estimates = []
    for h in bandwidths:
        gamma = 1.0 / (2.0 * h**2)
        estimates.append(
            _mean_off_diagonal(np.exp(-gamma * d_xx))
            + _mean_off_diagonal(np.exp(-gamma * d_yy))
            - 2.0 * float(np.exp(-gamma * d_xy).mean())
        )
    return {"mmd": float(np.mean(estimates)), "bandwidths": bandwidths}


def wasserstein2(
    x: np.ndarray, y: np.ndarray, max_cells: int = 3000, random_state: int = 0
) -> float:
    """2-Wasserstein distance between two point clouds by exact optimal transport.

    Uniform weights and squared-Euclidean cost (POT's ``ot.emd2``); the square root of the
    optimal cost, so in the units of the points (e.g. PCA units). For two samples of one
    distribution it is positive and shrinks only slowly with their size, so compare figures
    at equal sizes.

    Parameters
    ----------
    x, y : numpy.ndarray
        Points, cells x dimensions.
    max_cells : int, default 3000
        Each set is subsampled to at most this many points (exact transport is cubic in size).
    random_state : int, default 0
        Seed of the subsampling.

    Returns
    -------
    float
        W2, non-negative.

    Raises
    ------
    ValueError
        ``x`` or ``y`` is not 2-D or empty, or they differ in dimensions.

    Examples
    --------
    PCA coordinates of the bundled PBMCs; two halves of the real cells stand in for real and
    synthetic cells:

    >>> import scanpy as sc
    >>> import scvi_diffusion
    >>> from scvi_diffusion import metrics
    >>> adata = scvi_diffusion.data.pbmc68k()
    >>> sc.pp.normalize_total(adata, target_sum=1e4)
    >>> sc.pp.log1p(adata)
    >>> sc.pp.pca(adata, n_comps=30)
    >>> first, second = metrics.stratified_split(adata, "cell_type", test_size=0.5)
    >>> round(metrics.wasserstein2(first.obsm["X_pca"], second.obsm["X_pca"]), 1)
    14.8

    Two different cell types are much further apart:

    >>> monocytes = adata[adata.obs["cell_type"] == "CD14+ Monocyte"].obsm["X_pca"]
    >>> b_cells = adata[adata.obs["cell_type"] == "CD19+ B"].obsm["X_pca"]
    >>> round(metrics.wasserstein2(monocytes, b_cells), 1)
    32.3
    """
    x = _as_points(x, "x")
    y = _as_points(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"`x` and `y` differ in dimensions: {x.shape[1]} and {y.shape[1]}.")
    rng = np.random.default_rng(random_state)
    x = _subsample(x, max_cells, rng)
    y = _subsample(y, max_cells, rng)
    weights_x = np.full(x.shape[0], 1.0 / x.shape[0])
    weights_y = np.full(y.shape[0], 1.0 / y.shape[0])
    cost = ot.emd2(weights_x, weights_y, ot.dist(x, y), numItermax=10_000_000)
    return float(np.sqrt(max(float(cost), 0.0)))
