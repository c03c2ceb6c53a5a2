"""One shared gene space and PCA for real and synthetic cells, fit on the real cells only."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
from scipy import sparse

_SIDE_FIELDS = ("log", "pca", "counts", "library")


@dataclass
class SharedSpace:
    """Real and synthetic cells in one log-normalised gene space and one PCA.

    Built by :func:`shared_space`, rarely by hand. Rows are cells; ``real_*`` and
    ``synthetic_*`` hold the two sides of a comparison. Each parameter is kept as the
    attribute of the same name.

    Parameters
    ----------
    genes : pandas.Index
        The selected genes (columns of ``*_log`` and ``*_counts``).
    real_log, synthetic_log : numpy.ndarray
        The log1p of counts normalised to ``target_sum`` per cell.
    real_pca, synthetic_pca : numpy.ndarray
        PCA coordinates: ``(log - real_mean) @ components.T``.
    real_counts, synthetic_counts : numpy.ndarray
        Raw counts of the selected genes, dense float64.
    real_library, synthetic_library : numpy.ndarray
        Total counts per cell over all genes.
    real_mean, components : numpy.ndarray
        The PCA's centring vector and components (rows), fit on the real cells.
    target_sum : float, default 1e4
        Counts per cell after normalisation.

    Attributes
    ----------
    n_real : int
        Number of real cells.
    n_synthetic : int
        Number of synthetic cells.

    See Also
    --------
    shared_space : Builds the space from real and synthetic AnnData.

    Examples
    --------
    Half of the real cells stands in for generated cells:

    >>> import scvi_diffusion
    >>> from scvi_diffusion import metrics
    >>> adata = scvi_diffusion.data.pbmc68k()
    >>> real, synthetic = metrics.stratified_split(adata, "cell_type", test_size=0.5)
    >>> space = metrics.shared_space(real, synthetic)
    >>> space.n_real, space.n_synthetic
    (350, 350)
    >>> space.real_pca.shape, space.synthetic_log.shape
    ((350, 30), (350, 765))

    Any metric on coordinates takes the two sides:

    >>> round(metrics.wasserstein2(space.real_pca, space.synthetic_pca), 1)
    14.5
    """

    genes: pd.Index
    real_log: np.ndarray
    synthetic_log: np.ndarray
    real_pca: np.ndarray
    synthetic_pca: np.ndarray
    real_counts: np.ndarray
    synthetic_counts: np.ndarray
    real_library: np.ndarray
    synthetic_library: np.ndarray
    real_mean: np.ndarray
    components: np.ndarray
    target_sum: float = 1e4

    @property
    def n_real(self) -> int:
        """Number of real cells.

        Examples
        --------
        >>> import scvi_diffusion
        >>> from scvi_diffusion import metrics
        >>> adata = scvi_diffusion.data.pbmc68k()
        >>> metrics.shared_space(adata[:200], adata[200:300]).n_real
        200
        """
        return self.real_pca.shape[0]

    @property
    def n_synthetic(self) -> int:
        """Number of synthetic cells.

        Examples
        --------
        >>> import scvi_diffusion
        >>> from scvi_diffusion import metrics
        >>> adata = scvi_diffusion.data.pbmc68k()
        >>> metrics.shared_space(adata[:200], adata[200:300]).n_synthetic
        100
        """
        return self.synthetic_pca.shape[0]

    def subset(self, real_mask: np.ndarray, synthetic_mask: np.ndarray) -> SharedSpace:
        """The same space (genes, PCA) restricted to some real and some synthetic cells.

        Parameters
        ----------
        real_mask, synthetic_mask : numpy.ndarray
            Boolean masks or integer indices of the cells to keep on each side.

        Returns
        -------
        SharedSpace
            A new space; the arrays are copies.

        Raises
        ------
        ValueError
            A boolean mask's length differs from the number of cells on its side.

        Examples
        --------
        Compare B cells only, in the space fit on all real cells:

        >>> import scvi_diffusion
        >>> from scvi_diffusion import metrics
        >>> adata = scvi_diffusion.data.pbmc68k()
        >>> real, synthetic = metrics.stratified_split(adata, "cell_type", test_size=0.5)
        >>> space = metrics.shared_space(real, synthetic)
        >>> b_cells = space.subset(
        ...     real.obs["cell_type"] == "CD19+ B", synthetic.obs["cell_type"] == "CD19+ B"
        ... )
        >>> b_cells.n_real, b_cells.n_synthetic
        (47, 48)
        >>> b_cells.components is space.components
        True
        """
        real_rows = _rows(real_mask, self.n_real, "real_mask")
        synthetic_rows = _rows(synthetic_mask, self.n_synthetic, "synthetic_mask")
        real = {field: values[real_rows] for field, values in _side(self, "real").items()}
        synthetic = _side(self, "synthetic")
        synthetic = {field: values[synthetic_rows] for field, values in synthetic.items()}
        return _between(self, real, synthetic)


def _rows(mask: np.ndarray, n: int, name: str) -> np.ndarray:
    rows = np.asarray(mask)
    if rows.dtype == bool and rows.shape != (n,):
        raise ValueError(f"`{name}` is a boolean mask of length {rows.size}, expected {n}.")
    return rows


def _check_genes(genes: pd.Index, other: ad.AnnData, name: str = "synthetic") -> None:
    missing = pd.Index(genes).difference(other.var_names)
    if len(missing):
        examples = ", ".join(map(str, missing[:5]))
        raise ValueError(
            f"The {name} cells lack {len(missing)} genes of the real cells (e.g. {examples})."
        )


def _select_genes(real: ad.AnnData, n_top_genes: int) -> pd.Index:
    if real.n_vars <= n_top_genes:
        return real.var_names
    # inplace=False returns a frame and leaves `real` untouched.
    hvg = sc.pp.highly_variable_genes(
        real, n_top_genes=n_top_genes, flavor="seurat_v3", inplace=False
    )
    return real.var_names[hvg["highly_variable"].to_numpy()]


def _counts(adata: ad.AnnData, genes: pd.Index) -> tuple[np.ndarray, np.ndarray]:
    """Dense counts of ``genes`` (selected by name) and each cell's total over all genes."""
    columns = adata.var_names.get_indexer(genes)
    matrix = adata.X[:, columns]
    matrix = matrix.toarray() if sparse.issparse(matrix) else np.asarray(matrix)
    library = np.asarray(adata.X.sum(axis=1), dtype=np.float64).ravel()
    return matrix.astype(np.float64), library


def _log_normalize(counts: np.ndarray, library: np.ndarray, target_sum: float) -> np.ndarray:
    # Library over all genes, not only the selected ones, as normalize_total would do.
    return np.log1p(counts / np.maximum(library, 1e-12)[:, None] * target_sum)


def _project(space: SharedSpace, adata: ad.AnnData, name: str) -> dict[str, np.ndarray]:
    """``adata``'s cells in ``space``: counts, library sizes, log expression, PCA coordinates."""
    _check_genes(space.genes, adata, name)
    counts, library = _counts(adata, space.genes)
    log = _log_normalize(counts, library, space.target_sum)
    pca = (log - space.real_mean) @ space.components.T
    return {"log": log, "pca": pca, "counts": counts, "library": library}


def _side(space: SharedSpace, side: str) -> dict[str, np.ndarray]:
    """The arrays of one side (``"real"`` or ``"synthetic"``) of ``space``."""
    return {field: getattr(space, f"{side}_{field}") for field in _SIDE_FIELDS}


def _between(
    space: SharedSpace, real: dict[str, np.ndarray], synthetic: dict[str, np.ndarray]
) -> SharedSpace:
    """``space`` (genes, PCA) with the given cells on its real and synthetic sides."""
    return dataclasses.replace(
        space,
        **{f"real_{field}": real[field] for field in _SIDE_FIELDS},
        **{f"synthetic_{field}": synthetic[field] for field in _SIDE_FIELDS},
    )


def shared_space(
    real: ad.AnnData,
    synthetic: ad.AnnData,
    n_top_genes: int = 2000,
    n_comps: int = 30,
    target_sum: float = 1e4,
) -> SharedSpace:
    """Put real and synthetic counts in one space fit on the real cells only.

    normalize_total (``target_sum``, each cell's total over all genes) and log1p; up to
    ``n_top_genes`` highly variable genes (seurat_v3 on the real counts; all genes if there are
    fewer); a PCA with ``n_comps`` components fit on the real cells, into which synthetic cells
    are projected after centring with the real means. Synthetic genes are matched by name, so
    they may come in another order or include extra genes.

    A PCA overfits the cells it is fit on: the real cells spread wider along the later
    components than any projected cell, even a new real one. Fine for plots; to compare
    distributions, :func:`evaluate` fits the space on half of the real cells and compares the
    other half.

    Parameters
    ----------
    real, synthetic : anndata.AnnData
        AnnData with raw counts in ``X`` (dense or sparse); synthetic must have the real genes.
    n_top_genes : int, default 2000
        Most highly variable genes kept.
    n_comps : int, default 30
        PCA components (at most the number of real cells minus 1 and of genes).
    target_sum : float, default 1e4
        Counts per cell after normalisation.

    Returns
    -------
    SharedSpace
        Both sets' log expression, PCA coordinates, counts and library sizes.

    Raises
    ------
    ValueError
        ``synthetic`` lacks genes of ``real``, or ``real`` has fewer than 2 cells.

    Examples
    --------
    Half of the real cells stands in for generated cells, e.g. ``model.generate(n=350)``:

    >>> import scvi_diffusion
    >>> from scvi_diffusion import metrics
    >>> adata = scvi_diffusion.data.pbmc68k()
    >>> real, synthetic = metrics.stratified_split(adata, "cell_type", test_size=0.5)
    >>> space = metrics.shared_space(real, synthetic, n_top_genes=500, n_comps=20)
    >>> len(space.genes), space.real_pca.shape, space.synthetic_pca.shape
    (500, (350, 20), (350, 20))

    Synthetic genes are matched by name, whatever their order:

    >>> import numpy as np
    >>> reordered = synthetic[:, synthetic.var_names[::-1]]
    >>> again = metrics.shared_space(real, reordered, n_top_genes=500, n_comps=20)
    >>> np.allclose(again.synthetic_pca, space.synthetic_pca)
    True
    """
    _check_genes(real.var_names, synthetic)
    if real.n_obs < 2:
        raise ValueError(f"Need at least 2 real cells for a PCA, got {real.n_obs}.")
    genes = _select_genes(real, n_top_genes)
    real_counts, real_library = _counts(real, genes)
    real_log = _log_normalize(real_counts, real_library, target_sum)
    mean = real_log.mean(axis=0)
    n_comps = min(n_comps, real_log.shape[0] - 1, real_log.shape[1])
    _, _, components = np.linalg.svd(real_log - mean, full_matrices=False)
    components = components[:n_comps]
    fitted = {
        "log": real_log,
        "pca": (real_log - mean) @ components.T,
        "counts": real_counts,
        "library": real_library,
    }
    # The real cells stand in on the synthetic side until the synthetic cells are projected.
    space = SharedSpace(
        genes=genes,
        **{f"real_{field}": fitted[field] for field in _SIDE_FIELDS},
        **{f"synthetic_{field}": fitted[field] for field in _SIDE_FIELDS},
        real_mean=mean,
        components=components,
        target_sum=target_sum,
    )
    return _between(space, fitted, _project(space, synthetic, "synthetic"))
