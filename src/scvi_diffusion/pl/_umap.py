"""Joint UMAP of real and synthetic cells."""

from __future__ import annotations

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import scanpy as sc

from ..metrics import shared_space


def umap_real_vs_synthetic(
    real: ad.AnnData,
    synthetic: ad.AnnData,
    color: str | None = None,
    save: str | None = None,
    n_neighbors: int = 15,
    random_state: int = 0,
):
    """UMAP of real and synthetic cells in one embedding, by source and by a condition.

    Both sets are projected into a PCA fit on the real cells
    (:func:`~scvi_diffusion.metrics.shared_space`), then embedded together.

    Parameters
    ----------
    real, synthetic : anndata.AnnData
        AnnData with counts and the same genes.
    color : str, optional
        Obs column (in both) for the second panel, for example ``"cell_type"``.
    save : str, optional
        Path of a PNG to write.
    n_neighbors : int, default 15
        Neighbours of the kNN graph.
    random_state : int, default 0
        Seed of UMAP.

    Returns
    -------
    matplotlib.figure.Figure
        The figure: one panel coloured by source (real or synthetic), and one by ``color``.

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
    >>> fig = scvi_diffusion.pl.umap_real_vs_synthetic(real, synthetic, color="cell_type")
    >>> [ax.get_title() for ax in fig.axes[:2]]
    ['real and synthetic: source', 'real and synthetic: cell_type']
    """
    space = shared_space(real, synthetic)
    joint = ad.concat(
        {"real": real[:, []].copy(), "synthetic": synthetic[:, []].copy()},
        label="source",
        index_unique="-",
    )
    joint.obsm["X_pca"] = np.vstack([space.real_pca, space.synthetic_pca])
    sc.pp.neighbors(joint, n_neighbors=n_neighbors, use_rep="X_pca", random_state=random_state)
    sc.tl.umap(joint, random_state=random_state)
    panels = ["source"] + ([color] if color is not None else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 5), squeeze=False)
    for ax, key in zip(axes[0], panels, strict=True):
        sc.pl.umap(joint, color=key, ax=ax, show=False, title=f"real and synthetic: {key}")
    fig.tight_layout()
    if save is not None:
        fig.savefig(save, dpi=120, bbox_inches="tight")
    return fig
