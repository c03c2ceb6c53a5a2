"""Per-gene mean and variance of real vs synthetic cells."""

from __future__ import annotations

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
from scipy import stats

from ..metrics import shared_space


def gene_moments(
    real: ad.AnnData,
    synthetic: ad.AnnData,
    n_top_genes: int = 2000,
    save: str | None = None,
):
    """Scatter per-gene mean and variance of log-normalised expression, real vs synthetic.

    Each dot is a gene of the shared evaluation space
    (:func:`~scvi_diffusion.metrics.shared_space`); a perfect generator puts every dot on the
    diagonal. Each panel's title gives the Spearman and Pearson correlations.

    Parameters
    ----------
    real, synthetic : anndata.AnnData
        AnnData with counts and the same genes.
    n_top_genes : int, default 2000
        Most highly variable genes of the real cells to show.
    save : str, optional
        Path of a PNG to write.

    Returns
    -------
    matplotlib.figure.Figure
        The figure, with one panel for means and one for variances.

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
    >>> fig = scvi_diffusion.pl.gene_moments(real, synthetic)
    >>> print(fig.axes[0].get_title())  # doctest: +ELLIPSIS
    mean of log1p expression
    Spearman 0.99..., Pearson 0.99...

    Write it to a file with ``save="gene_moments.png"``, or ``fig.savefig(...)``.
    """
    space = shared_space(real, synthetic, n_top_genes=n_top_genes)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, name, moment in zip(axes, ("mean", "variance"), (np.mean, np.var), strict=True):
        x = moment(space.real_log, axis=0)
        y = moment(space.synthetic_log, axis=0)
        ax.scatter(x, y, s=6, alpha=0.6, color="tab:blue", linewidths=0)
        upper = float(max(x.max(), y.max(), 1e-6)) * 1.05
        ax.plot([0, upper], [0, upper], color="grey", lw=1, ls="--")
        ax.set_xlim(0, upper)
        ax.set_ylim(0, upper)
        ax.set_xlabel(f"real cells: per-gene {name}")
        ax.set_ylabel(f"synthetic cells: per-gene {name}")
        spearman = stats.spearmanr(x, y).statistic
        pearson = stats.pearsonr(x, y).statistic
        ax.set_title(f"{name} of log1p expression\nSpearman {spearman:.3f}, Pearson {pearson:.3f}")
    fig.tight_layout()
    if save is not None:
        fig.savefig(save, dpi=120, bbox_inches="tight")
    return fig
