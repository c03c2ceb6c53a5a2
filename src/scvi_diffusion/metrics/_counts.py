"""Checks on raw counts: zeros, library sizes and the mean-variance relationship."""

from __future__ import annotations

import anndata as ad
import numpy as np
from scipy import stats

from ._expression import _pearson
from ._space import SharedSpace, shared_space


def _zero_fraction_checks(real: np.ndarray, synthetic: np.ndarray) -> dict[str, float]:
    real_genes = (real == 0).mean(axis=0)
    synthetic_genes = (synthetic == 0).mean(axis=0)
    return {
        "zero_fraction_gene_corr": _pearson(real_genes, synthetic_genes),
        "zero_fraction_gene_mae": float(np.abs(real_genes - synthetic_genes).mean()),
        "zero_fraction_cell_ks": float(
            stats.ks_2samp((real == 0).mean(axis=1), (synthetic == 0).mean(axis=1)).statistic
        ),
    }


def _library_checks(real: np.ndarray, synthetic: np.ndarray) -> dict[str, float]:
    real_log = np.log10(1 + real)
    synthetic_log = np.log10(1 + synthetic)
    return {
        "library_size_ks": float(stats.ks_2samp(real_log, synthetic_log).statistic),
        "library_size_w1": float(stats.wasserstein_distance(real_log, synthetic_log)),
    }


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    if x.size < 2 or np.ptp(x) == 0:
        return float("nan")
    return float(np.polyfit(x, y, 1)[0])


def _mean_variance_checks(real: np.ndarray, synthetic: np.ndarray) -> dict[str, float]:
    nan = float("nan")
    if real.shape[0] < 2 or synthetic.shape[0] < 2:
        return dict.fromkeys(
            ("mean_variance_slope_real", "mean_variance_slope_synthetic", "dispersion_mae"), nan
        )
    real_mean, synthetic_mean = real.mean(axis=0), synthetic.mean(axis=0)
    real_var, synthetic_var = real.var(axis=0, ddof=1), synthetic.var(axis=0, ddof=1)
    # Logs need positive means and variances in both sets.
    keep = (real_mean > 0) & (synthetic_mean > 0) & (real_var > 0) & (synthetic_var > 0)
    log_real_mean, log_real_var = np.log10(real_mean[keep]), np.log10(real_var[keep])
    log_synthetic_mean = np.log10(synthetic_mean[keep])
    log_synthetic_var = np.log10(synthetic_var[keep])
    dispersion_gap = (log_real_var - log_real_mean) - (log_synthetic_var - log_synthetic_mean)
    return {
        "mean_variance_slope_real": _slope(log_real_mean, log_real_var),
        "mean_variance_slope_synthetic": _slope(log_synthetic_mean, log_synthetic_var),
        "dispersion_mae": float(np.abs(dispersion_gap).mean()) if keep.any() else nan,
    }


def _smoothed_zero_fraction(counts: np.ndarray) -> np.ndarray:
    # Half a zero in half a cell keeps genes that are never (or always) zero finite in logs.
    return ((counts == 0).sum(axis=0) + 0.5) / (counts.shape[0] + 1)


def _per_gene_log_ratios(real: np.ndarray, synthetic: np.ndarray) -> dict[str, float]:
    """Median over genes of |ln(synthetic / real)| of the variance and of the zero fraction."""
    nan = float("nan")
    if real.shape[0] < 2 or synthetic.shape[0] < 2:
        return {"variance_log_ratio": nan, "zero_fraction_log_ratio": nan}
    real_var, synthetic_var = real.var(axis=0, ddof=1), synthetic.var(axis=0, ddof=1)
    keep = (real_var > 0) & (synthetic_var > 0)
    variance_ratio = np.abs(np.log(synthetic_var[keep] / real_var[keep]))
    zero_ratio = np.abs(np.log(_smoothed_zero_fraction(synthetic) / _smoothed_zero_fraction(real)))
    return {
        "variance_log_ratio": float(np.median(variance_ratio)) if keep.any() else nan,
        "zero_fraction_log_ratio": float(np.median(zero_ratio)),
    }


def _count_checks(space: SharedSpace) -> dict[str, float]:
    return {
        **_zero_fraction_checks(space.real_counts, space.synthetic_counts),
        **_library_checks(space.real_library, space.synthetic_library),
        **_mean_variance_checks(space.real_counts, space.synthetic_counts),
        **_per_gene_log_ratios(space.real_counts, space.synthetic_counts),
    }


def count_checks(
    real: ad.AnnData, synthetic: ad.AnnData, space: SharedSpace | None = None
) -> dict[str, float]:
    """Compare raw-count properties of real and synthetic cells on the shared genes.

    Parameters
    ----------
    real, synthetic : anndata.AnnData
        AnnData with raw counts.
    space : SharedSpace, optional
        A precomputed :func:`shared_space` of ``real`` and ``synthetic``; default: computed.
        Its genes (the selected highly variable genes) are the ones compared, library sizes
        are totals over all genes.

    Returns
    -------
    dict of str to float
        With the keys

        - ``zero_fraction_gene_corr``, ``zero_fraction_gene_mae``: Pearson correlation and
          mean absolute difference of the per-gene fractions of zeros;
        - ``zero_fraction_cell_ks``: KS statistic between the per-cell fractions of zeros;
        - ``library_size_ks``, ``library_size_w1``: KS statistic and 1-D Wasserstein
          distance between the ``log10(1 + library size)`` distributions;
        - ``mean_variance_slope_real``, ``mean_variance_slope_synthetic``: least-squares
          slope of log10 variance on log10 mean over genes with positive mean and variance in
          both sets;
        - ``dispersion_mae``: mean absolute difference of log10(variance / mean) over those
          genes;
        - ``variance_log_ratio``: median over genes of ``|ln(synthetic variance / real
          variance)|`` of the counts (genes with positive variance in both sets): 0 when every
          gene is as variable as in the real cells, ``ln 2 = 0.69`` when each is twice or half
          as variable;
        - ``zero_fraction_log_ratio``: median over genes of ``|ln(synthetic zero fraction /
          real zero fraction)|``, each fraction counting half a zero in half a cell more
          (``(zeros + 0.5) / (cells + 1)``) so that genes never or always zero stay finite.

        Sampling noise alone puts the last two above 0: compare them with two sets of real
        cells (the floor of :func:`evaluate`).

    Raises
    ------
    ValueError
        Either side has no cells, or ``synthetic`` lacks genes of ``real``.

    Examples
    --------
    Half of the real cells stands in for generated cells:

    >>> import scvi_diffusion
    >>> from scvi_diffusion import metrics
    >>> adata = scvi_diffusion.data.pbmc68k()
    >>> real, synthetic = metrics.stratified_split(adata, "cell_type", test_size=0.5)
    >>> checks = metrics.count_checks(real, synthetic)
    >>> round(checks["zero_fraction_gene_corr"], 2)
    0.99
    >>> round(checks["library_size_ks"], 2)
    0.05

    Counts of real cells grow in variance faster than in mean (slope above 1, overdispersion);
    generated cells should share the slope:

    >>> round(checks["mean_variance_slope_real"], 2)
    1.22
    >>> round(checks["mean_variance_slope_synthetic"], 2)
    1.22

    Per gene, variances and zero fractions of two halves of the same cells differ by a few
    percent:

    >>> round(checks["variance_log_ratio"], 2), round(checks["zero_fraction_log_ratio"], 3)
    (0.18, 0.027)
    """
    if space is None:
        space = shared_space(real, synthetic)
    if space.n_real < 1 or space.n_synthetic < 1:
        raise ValueError(
            f"Count checks need cells on both sides, got {space.n_real} real and "
            f"{space.n_synthetic} synthetic."
        )
    return _count_checks(space)
