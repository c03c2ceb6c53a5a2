"""Joint UMAP of real and synthetic cells."""

from __future__ import annotations

from collections.abc import Sequence

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import scanpy as sc

from ..metrics import shared_space


def _color_keys(color: str | Sequence[str] | None, **sets: ad.AnnData) -> list[str]:
    """``color`` as a list of obs keys, each checked to be a column of every set."""
    if color is None:
        return []
    keys = [color] if isinstance(color, str) else list(color)
    for key in keys:
        if not isinstance(key, str):
            raise TypeError(f"`color` must be an obs key or a list of them, got {key!r}.")
        for name, adata in sets.items():
            if key not in adata.obs.columns:
                raise ValueError(
                    f"`color` {key!r} is not a column of the {name} cells' obs; they have "
                    f"{list(map(str, adata.obs.columns))}."
                )
    # A key given twice would only repeat its panel.
    return list(dict.fromkeys(keys))


def umap_real_vs_synthetic(
    real: ad.AnnData,
    synthetic: ad.AnnData,
    color: str | Sequence[str] | None = None,
    save: str | None = None,
    n_neighbors: int = 15,
    random_state: int = 0,
):
    """UMAP of real and synthetic cells in one embedding, by source and by obs keys.

    Both sets are projected into a PCA fit on the real cells
    (:func:`~scvi_diffusion.metrics.shared_space`), then embedded together.

    Parameters
    ----------
    real, synthetic : anndata.AnnData
        AnnData with counts and the same genes.
    color : str or list of str, optional
        Obs column(s), in both, to colour further panels by, as in :func:`scanpy.pl.umap`:
        for example ``"cell_type"`` or ``["cell_type", "patient_id"]``.
    save : str, optional
        Path of a PNG to write.
    n_neighbors : int, default 15
        Neighbours of the kNN graph.
    random_state : int, default 0
        Seed of UMAP.

    Returns
    -------
    matplotlib.figure.Figure
        The figure: one panel coloured by source (real or synthetic), then one per ``color``
        key, at most three panels a row.

    Raises
    ------
    ValueError
        A ``color`` key is not an obs column of both sets, ``synthetic`` lacks genes of
        ``real``, or ``real`` has fewer than 2 cells.
    TypeError
        ``color`` is neither a string nor a list of strings.

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

    Several keys give one panel each:

    >>> real.obs["donor"] = synthetic.obs["donor"] = "donor 1"
    >>> fig = scvi_diffusion.pl.umap_real_vs_synthetic(
    ...     real, synthetic, color=["cell_type", "donor"]
    ... )
    >>> [ax.get_title() for ax in fig.axes]
    ['real and synthetic: source', 'real and synthetic: cell_type', 'real and synthetic: donor']
    """
    keys = _color_keys(color, real=real, synthetic=synthetic)
    space = shared_space(real, synthetic)
    joint = ad.concat(
        {"real": real[:, []].copy(), "synthetic": synthetic[:, []].copy()},
        label="source",
        index_unique="-",
    )
    joint.obsm["X_pca"] = np.vstack([space.real_pca, space.synthetic_pca])
    sc.pp.neighbors(joint, n_neighbors=n_neighbors, use_rep="X_pca", random_state=random_state)
    sc.tl.umap(joint, random_state=random_state)
    panels = ["source", *keys]
    n_columns = min(len(panels), 3)
    n_rows = -(-len(panels) // n_columns)
    fig, axes = plt.subplots(
        n_rows, n_columns, figsize=(6.5 * n_columns, 5 * n_rows), squeeze=False
    )
    for ax in axes.flat[len(panels) :]:
        ax.remove()
    # scanpy refuses `ax` with several keys at once, so each key gets its own call and panel.
    for ax, key in zip(axes.flat[: len(panels)], panels, strict=True):
        sc.pl.umap(joint, color=key, ax=ax, show=False, title=f"real and synthetic: {key}")
    fig.tight_layout()
    if save is not None:
        fig.savefig(save, dpi=120, bbox_inches="tight")
    return fig
