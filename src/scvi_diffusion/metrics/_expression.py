"""Agreement of per-gene summaries of log-normalised expression."""

from __future__ import annotations

import anndata as ad
import numpy as np
from scipy import stats

from ._space import SharedSpace, shared_space


def _is_constant(values: np.ndarray) -> bool:
    return values.size < 2 or bool(np.ptp(values) == 0)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; nan (without scipy's warning) when either vector is constant."""
    if _is_constant(a) or _is_constant(b):
        return float("nan")
    return float(stats.pearsonr(a, b).statistic)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if _is_constant(a) or _is_constant(b):
        return float("nan")
    return float(stats.spearmanr(a, b).statistic)


def _correlations(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    return {"spearman": _spearman(a, b), "pearson": _pearson(a, b)}


def _mean_correlations(space: SharedSpace) -> dict[str, float]:
    return _correlations(space.real_log.mean(axis=0), space.synthetic_log.mean(axis=0))


def _variance_correlations(space: SharedSpace) -> dict[str, float]:
    if space.n_real < 2 or space.n_synthetic < 2:
        return {"spearman": float("nan"), "pearson": float("nan")}
    return _correlations(
        space.real_log.var(axis=0, ddof=1), space.synthetic_log.var(axis=0, ddof=1)
    )


def mean_expression_correlation(
    real: ad.AnnData, synthetic: ad.AnnData, space: SharedSpace | None = None
) -> dict[str, float]:
    """Spearman and Pearson correlation of per-gene mean log-normalised expression.

    Parameters
    ----------
    real, synthetic : anndata.AnnData
        AnnData with counts.
    space : SharedSpace, optional
        A precomputed :func:`shared_space` of ``real`` and ``synthetic``; default: computed.

    Returns
    -------
    dict of str to float
        ``{"spearman": ..., "pearson": ...}``; nan when the means of either set are constant.

    Raises
    ------
    ValueError
        ``synthetic`` lacks genes of ``real``, or ``real`` has fewer than 2 cells.

    Examples
    --------
    Half of the real cells stands in for generated cells:

    >>> import scvi_diffusion
    >>> from scvi_diffusion import metrics
    >>> adata = scvi_diffusion.data.pbmc68k()
    >>> real, synthetic = metrics.stratified_split(adata, "cell_type", test_size=0.5)
    >>> correlation = metrics.mean_expression_correlation(real, synthetic)
    >>> round(correlation["spearman"], 2), round(correlation["pearson"], 2)
    (0.99, 0.99)

    Compare several sets in one :func:`shared_space` by passing it:

    >>> space = metrics.shared_space(real, synthetic)
    >>> metrics.mean_expression_correlation(real, synthetic, space=space) == correlation
    True
    """
    if space is None:
        space = shared_space(real, synthetic)
    return _mean_correlations(space)


def variance_correlation(
    real: ad.AnnData, synthetic: ad.AnnData, space: SharedSpace | None = None
) -> dict[str, float]:
    """Spearman and Pearson correlation of per-gene variances of log-normalised expression.

    Parameters
    ----------
    real, synthetic : anndata.AnnData
        AnnData with counts.
    space : SharedSpace, optional
        A precomputed :func:`shared_space` of ``real`` and ``synthetic``; default: computed.

    Returns
    -------
    dict of str to float
        ``{"spearman": ..., "pearson": ...}``; nan when either set has fewer than 2 cells or
        constant variances.

    Raises
    ------
    ValueError
        ``synthetic`` lacks genes of ``real``, or ``real`` has fewer than 2 cells.

    Examples
    --------
    Half of the real cells stands in for generated cells:

    >>> import scvi_diffusion
    >>> from scvi_diffusion import metrics
    >>> adata = scvi_diffusion.data.pbmc68k()
    >>> real, synthetic = metrics.stratified_split(adata, "cell_type", test_size=0.5)
    >>> correlation = metrics.variance_correlation(real, synthetic)
    >>> round(correlation["spearman"], 2), round(correlation["pearson"], 2)
    (0.98, 0.99)
    """
    if space is None:
        space = shared_space(real, synthetic)
    return _variance_correlations(space)
