"""The scoring protocol of CFGen (Palma et al., ICLR 2025) and the papers that compare with it.

Its figures are per-condition distances in a PCA of the real test cells, averaged over the
conditions without weights: exact Wasserstein-1 and -2 (POT's ``emd2``) and a biased RBF-MMD²
whose kernel is a sum of Gaussians of fixed widths. This module reproduces it so that this
package's generators can be quoted beside published tables.
"""

from __future__ import annotations

from collections.abc import Sequence

import anndata as ad
import numpy as np
import ot
import pandas as pd
import scanpy as sc
from scipy.spatial.distance import cdist

from ..data._split import _labels
from ._distances import _as_points
from ._space import _check_genes, _counts, _log_normalize, _select_genes

CFGEN_SIGMAS = (0.01, 0.1, 1.0, 10.0, 100.0)
"""Widths of the Gaussians summed in the protocol's MMD kernel."""


def mmd_rbf_biased(x: np.ndarray, y: np.ndarray, sigmas: Sequence[float] = CFGEN_SIGMAS) -> float:
    """Biased MMD² with a kernel that sums Gaussians of several widths.

    ``k(a, b) = sum_s exp(-||a - b||² / (2 s²))`` and MMD² = mean k(x, x') + mean k(y, y') -
    2 mean k(x, y), every mean including the diagonal (the V-statistic). It is 0 for identical
    sets and positive otherwise; for small sets its diagonal terms dominate, so it is not 0 in
    expectation for two samples of one distribution.

    Parameters
    ----------
    x, y : numpy.ndarray
        Points, cells x dimensions.
    sigmas : sequence of float, default (0.01, 0.1, 1, 10, 100)
        The Gaussians' widths ``s``.

    Returns
    -------
    float
        The biased MMD².

    Examples
    --------
    Two single points one unit apart: each Gaussian contributes ``2 - 2 exp(-1 / (2 s²))``.

    >>> import numpy as np
    >>> from scvi_diffusion.metrics import mmd_rbf_biased
    >>> round(mmd_rbf_biased(np.zeros((1, 2)), np.array([[1.0, 0.0]])), 4)
    4.797
    """
    x = _as_points(x, "x")
    y = _as_points(y, "y")
    if not sigmas or any(s <= 0 for s in sigmas):
        raise ValueError(f"`sigmas` must be positive widths, got {sigmas}.")
    gammas = [1.0 / (2.0 * s**2) for s in sigmas]

    def kernel_mean(a: np.ndarray, b: np.ndarray) -> float:
        squared = cdist(a, b, "sqeuclidean")
        return float(sum(np.exp(-gamma * squared).mean() for gamma in gammas))

    return kernel_mean(x, x) + kernel_mean(y, y) - 2.0 * kernel_mean(x, y)


def wasserstein_exact(x: np.ndarray, y: np.ndarray, power: int = 2) -> float:
    """Exact Wasserstein-``power`` distance between two point clouds of equal weights.

    Solved with POT's network simplex (``ot.emd2``) on the euclidean (``power=1``) or squared
    euclidean (``power=2``) costs; for ``power=2`` the square root of the optimal cost.

    Parameters
    ----------
    x, y : numpy.ndarray
        Points, cells x dimensions; the sets may differ in size.
    power : {1, 2}, default 2
        Which distance.

    Returns
    -------
    float
        W1 or W2, in the units of the points.

    Examples
    --------
    A set and its translate by a vector of length 5 are 5 apart in both distances:

    >>> import numpy as np
    >>> from scvi_diffusion.metrics import wasserstein_exact
    >>> x = np.random.default_rng(0).normal(size=(20, 2))
    >>> round(wasserstein_exact(x, x + [3.0, 4.0], power=2), 6)
    5.0
    """
    if power not in (1, 2):
        raise ValueError(f"`power` must be 1 or 2, got {power!r}.")
    x = _as_points(x, "x")
    y = _as_points(y, "y")
    cost = cdist(x, y, "euclidean" if power == 1 else "sqeuclidean")
    total = float(ot.emd2(ot.unif(len(x)), ot.unif(len(y)), cost, numItermax=10_000_000))
    return float(np.sqrt(max(total, 0.0))) if power == 2 else total


def _real_pca(
    real: ad.AnnData, genes: pd.Index, n_comps: int, target_sum: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coordinates of the real cells, their HVG means and the components (rows)."""
    counts, library = _counts(real, genes)
    log_expression = _log_normalize(counts, library, target_sum)
    n_comps = min(n_comps, min(log_expression.shape) - 1)
    coordinates, components, _, _ = sc.pp.pca(
        log_expression, n_comps=n_comps, return_info=True, random_state=0
    )
    return coordinates, log_expression.mean(axis=0), components


def cfgen_scores(
    real: ad.AnnData,
    synthetic: ad.AnnData,
    condition_key: str,
    n_top_genes: int = 2000,
    n_comps: int = 30,
    target_sum: float = 1e4,
    sigmas: Sequence[float] = CFGEN_SIGMAS,
) -> pd.DataFrame:
    """Score synthetic cells against real test cells with CFGen's published protocol.

    On the real cells' counts: ``n_top_genes`` ``seurat_v3`` highly variable genes,
    normalize_total to ``target_sum`` and log1p, and a PCA with ``n_comps`` components fit on
    those genes of the real cells (scanpy's ``pca``). The synthetic cells are normalised the
    same way, restricted to the same genes, centred on the real cells' means and projected on
    the same components. Then, per condition present on both sides with at least 2 cells on
    each: exact W1 and W2 (:func:`wasserstein_exact`) and the biased RBF-MMD²
    (:func:`mmd_rbf_biased`) on the first ``min(n_real, n_synthetic)`` cells of each side.
    The published figure is the unweighted mean over conditions (the row ``"mean"``).

    Unlike :func:`evaluate`, the PCA is fit on every real cell that is then compared, so two
    sets of real cells do not score 0 (the floor is scored the same way: pass real training
    cells as ``synthetic``), and for a condition with few cells the biased MMD is mostly its
    own diagonal, the same for every generator.

    Parameters
    ----------
    real
        Real (held-out) cells with raw counts in ``X`` and ``obs[condition_key]``.
    synthetic
        Cells to score, with counts for at least the real cells' selected genes and
        ``obs[condition_key]``.
    condition_key
        The obs column whose values define the groups (for example the cell type).
    n_top_genes, n_comps, target_sum, sigmas
        The protocol's settings; the defaults are the published ones.

    Returns
    -------
    pandas.DataFrame
        One row per scored condition and a last row ``"mean"`` (the distances' unweighted
        means, the cell counts' sums); columns ``w1``, ``w2``, ``mmd``, ``n_real`` and
        ``n_synthetic``. Conditions skipped for having at most one
        cell on a side are listed in ``attrs["skipped"]``.

    Examples
    --------
    >>> import scvi_diffusion
    >>> from scvi_diffusion import metrics
    >>> adata = scvi_diffusion.data.pbmc68k()
    >>> train, test = metrics.stratified_split(adata, "cell_type", random_state=0)
    >>> table = metrics.cfgen_scores(test, train, "cell_type")
    >>> list(table.columns)
    ['w1', 'w2', 'mmd', 'n_real', 'n_synthetic']
    >>> table.index[-1]
    'mean'
    """
    real_labels = _labels(real, condition_key)
    synthetic_labels = _labels(synthetic, condition_key)
    genes = _select_genes(real, n_top_genes)
    _check_genes(genes, synthetic)
    real_coordinates, means, components = _real_pca(real, genes, n_comps, target_sum)
    counts, library = _counts(synthetic, genes)
    synthetic_coordinates = (_log_normalize(counts, library, target_sum) - means) @ components.T

    rows, skipped = {}, []
    for condition in pd.unique(real_labels):
        x = real_coordinates[real_labels == condition]
        y = synthetic_coordinates[synthetic_labels == condition]
        if len(x) < 2 or len(y) < 2:
            skipped.append(condition)
            continue
        n = min(len(x), len(y))
        rows[condition] = {
            "w1": wasserstein_exact(x, y, power=1),
            "w2": wasserstein_exact(x, y, power=2),
            "mmd": mmd_rbf_biased(x[:n], y[:n], sigmas),
            "n_real": len(x),
            "n_synthetic": len(y),
        }
    if not rows:
        raise ValueError(
            f"No value of obs[{condition_key!r}] has at least 2 cells on both sides; nothing "
            "to score."
        )
    table = pd.DataFrame.from_dict(rows, orient="index")
    distances = ["w1", "w2", "mmd"]
    table.loc["mean"] = [*table[distances].mean(), *table[["n_real", "n_synthetic"]].sum()]
    table.attrs["skipped"] = skipped
    return table
