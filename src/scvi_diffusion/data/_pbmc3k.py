"""10x Genomics' 3k PBMCs with raw counts and the cell types of scanpy's tutorial."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
from scipy import sparse


def _from_file(path: Path) -> ad.AnnData:
    if not path.is_file():
        raise FileNotFoundError(f"No PBMC3K file at '{path}'.")
    adata = ad.read_h5ad(path)
    if "cell_type" not in adata.obs:
        raise ValueError(
            f"'{path}' has no obs['cell_type']; expected the raw PBMC3K counts with the cell "
            "types of scanpy's pbmc3k_processed (see the docstring of data.pbmc3k)."
        )
    return adata


def _downloaded() -> ad.AnnData:
    """scanpy's raw PBMC3K counts, labelled with its processed copy's Louvain cell types."""
    try:
        adata = sc.datasets.pbmc3k()
        labels = sc.datasets.pbmc3k_processed().obs["louvain"]
    except Exception as error:  # any network or file failure means the same to the user
        raise RuntimeError(
            "PBMC3K is not available: no `path` was given and scanpy could not download it "
            f"({type(error).__name__}: {error}). Pass `path=` to a local copy of the raw counts "
            "with obs['cell_type']."
        ) from error
    adata.obs["cell_type"] = labels.reindex(adata.obs_names)
    return adata


def pbmc3k(path: str | Path | None = None) -> ad.AnnData:
    """The 2,638 labelled cells of 10x Genomics' 3k PBMCs, with raw counts for 32,738 genes.

    The cells that pass the quality control of scanpy's PBMC3K tutorial, labelled with its
    Louvain cell types (8 types, from 1,144 CD4 T cells to 15 megakaryocytes). Published
    generation benchmarks (CFGen and later) use these cells and the genes detected in at least
    30 of them (8,573 genes: ``sc.pp.filter_genes(adata, min_cells=30)``), split 80/20 at
    random.

    Parameters
    ----------
    path
        An ``.h5ad`` file with the raw counts of all 2,700 cells (or only the labelled ones)
        and ``obs['cell_type']`` (missing for unlabelled cells), as scanpy's
        ``datasets.pbmc3k()`` counts with ``pbmc3k_processed().obs['louvain']`` added. Without
        it, scanpy downloads both (network access needed; cached in ``sc.settings.datasetdir``).

    Returns
    -------
    anndata.AnnData
        With

        - ``X``: integer counts (``float32`` CSR matrix), 2,638 cells x 32,738 genes;
        - ``obs['cell_type']``: the 8 cell types (categorical);
        - ``var['gene_ids']``: Ensembl ids, when the source has them.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        The file has no ``obs['cell_type']``, no labelled cells or counts that are not integers.
    RuntimeError
        No ``path`` and the download failed.

    Examples
    --------
    >>> import scvi_diffusion
    >>> adata = scvi_diffusion.data.pbmc3k("../shared/data/pbmc3k_raw.h5ad")  # doctest: +SKIP
    >>> adata.shape  # doctest: +SKIP
    (2638, 32738)
    """
    adata = _from_file(Path(path)) if path is not None else _downloaded()
    labelled = adata.obs["cell_type"].notna().to_numpy()
    if not labelled.any():
        raise ValueError("No cell has a cell type in obs['cell_type'].")
    adata = adata[labelled].copy()
    matrix = sparse.csr_matrix(adata.X, dtype=np.float32)
    if matrix.nnz and not np.all(matrix.data == np.round(matrix.data)):
        raise ValueError("PBMC3K's X must hold raw integer counts; these are not integers.")
    kept = [column for column in ("gene_ids",) if column in adata.var]
    var = adata.var[kept]
    cell_type = adata.obs["cell_type"].astype(str).astype("category")
    return ad.AnnData(
        matrix, obs=pd.DataFrame({"cell_type": cell_type}, index=adata.obs_names), var=var.copy()
    )


PUBLISHED_MIN_CELLS = 30
"""The published PBMC3K benchmarks keep the genes detected in at least this many cells."""
PUBLISHED_TEST_FRACTION = 0.2


def published_split(adata: ad.AnnData, seed: int) -> tuple[ad.AnnData, ad.AnnData]:
    """PBMC3K as CFGen and later papers benchmark it: the genes detected in at least
    :data:`PUBLISHED_MIN_CELLS` cells, then a random (unstratified) 80/20 split drawn with
    ``seed``; training and test cells keep their order in ``adata``."""
    detected = np.asarray((adata.X > 0).sum(axis=0)).ravel() >= PUBLISHED_MIN_CELLS
    adata = adata[:, detected]
    order = np.random.default_rng(seed).permutation(adata.n_obs)
    n_test = round(PUBLISHED_TEST_FRACTION * adata.n_obs)
    return adata[np.sort(order[n_test:])].copy(), adata[np.sort(order[:n_test])].copy()
