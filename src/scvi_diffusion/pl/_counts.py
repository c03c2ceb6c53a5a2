"""Per-gene count statistics of real and synthetic cells against the gene's mean."""

from __future__ import annotations

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np

from ..metrics import shared_space
from ..metrics._counts import _per_gene_log_ratios


def count_moments(
    real: ad.AnnData,
    synthetic: ad.AnnData,
    n_top_genes: int = 2000,
    save: str | None = None,
):
    """Per-gene variance and zero fraction against the mean count, real and synthetic overlaid.

    Each gene of the shared evaluation space (:func:`~scvi_diffusion.metrics.shared_space`)
    gives one dot per set, from raw counts: its mean count per cell on the x axis (log scale),
    its variance (left, log scale) and its fraction of zeros (right) on the y axis. The dashed
    lines are what Poisson counts at a common depth would give (variance = mean, zero fraction
    = exp(-mean)): real counts above them are overdispersed, and a generator whose dots sit on
    them while the real ones do not has the wrong count likelihood
    (``gene_likelihood``). Each panel's title gives the matching metric of
    :func:`~scvi_diffusion.metrics.count_checks` (``variance_log_ratio``,
    ``zero_fraction_log_ratio``); compare it with two sets of real cells.

    Parameters
    ----------
    real, synthetic : anndata.AnnData
        AnnData with raw counts and the same genes.
    n_top_genes : int, default 2000
        Most highly variable genes of the real cells to show.
    save : str, optional
        Path of a PNG to write.

    Returns
    -------
    matplotlib.figure.Figure
        The figure, with one panel for variances and one for zero fractions.

    Raises
    ------
    ValueError
        ``synthetic`` lacks genes of ``real``, or either has fewer than 2 cells.

    See Also
    --------
    gene_moments : Means and variances of log-normalised expression, real against synthetic.

    Examples
    --------
    Half of the real cells stands in for generated cells:

    >>> import scvi_diffusion
    >>> from scvi_diffusion import metrics
    >>> adata = scvi_diffusion.data.pbmc68k()
    >>> real, synthetic = metrics.stratified_split(adata, "cell_type", test_size=0.5)
    >>> fig = scvi_diffusion.pl.count_moments(real, synthetic)
    >>> print(fig.axes[0].get_title())
    per-gene variance of counts
    median |ln(synthetic / real)| 0.18

    Write it to a file with ``save="count_moments.png"``, or ``fig.savefig(...)``.
    """
    space = shared_space(real, synthetic, n_top_genes=n_top_genes)
    if space.n_real < 2 or space.n_synthetic < 2:
        raise ValueError(
            f"Per-gene variances need at least 2 cells on each side, got {space.n_real} real "
            f"and {space.n_synthetic} synthetic."
        )
    ratios = _per_gene_log_ratios(space.real_counts, space.synthetic_counts)
    sides = {
        "real": (space.real_counts, "tab:grey"),
        "synthetic": (space.synthetic_counts, "tab:orange"),
    }
    fig, (var_ax, zero_ax) = plt.subplots(1, 2, figsize=(10, 4.5))
    means = []
    for label, (counts, color) in sides.items():
        mean = counts.mean(axis=0)
        shown = mean > 0
        means.append(mean[shown])
        style = {"s": 6, "alpha": 0.5, "color": color, "linewidths": 0, "label": label}
        var_ax.scatter(mean[shown], counts.var(axis=0, ddof=1)[shown], **style)
        zero_ax.scatter(mean[shown], (counts == 0).mean(axis=0)[shown], **style)
    grid = np.geomspace(min(m.min() for m in means), max(m.max() for m in means), 200)
    var_ax.plot(grid, grid, color="black", lw=1, ls="--", label="Poisson")
    zero_ax.plot(grid, np.exp(-grid), color="black", lw=1, ls="--", label="Poisson")
    var_ax.set(xscale="log", yscale="log", ylabel="variance of counts")
    zero_ax.set(xscale="log", ylim=(-0.02, 1.02), ylabel="fraction of cells with 0 counts")
    titles = (
        ("variance", ratios["variance_log_ratio"]),
        ("zero fraction", ratios["zero_fraction_log_ratio"]),
    )
    for ax, (name, ratio) in zip((var_ax, zero_ax), titles, strict=True):
        ax.set_xlabel("mean count per cell")
        ax.set_title(f"per-gene {name} of counts\nmedian |ln(synthetic / real)| {ratio:.2f}")
        ax.legend(markerscale=3, frameon=False)
    fig.tight_layout()
    if save is not None:
        fig.savefig(save, dpi=120, bbox_inches="tight")
    return fig
