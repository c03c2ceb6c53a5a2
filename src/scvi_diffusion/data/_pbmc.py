"""The PBMC cells that scanpy ships, as raw integer counts."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
from scipy import sparse


def pbmc68k() -> ad.AnnData:
    """700 real PBMCs (10x Genomics, Zheng et al. 2017) with integer counts for 765 genes.

    Built from :func:`scanpy.datasets.pbmc68k_reduced`, which is bundled with scanpy, so no
    network is needed. Its ``raw.X`` holds ``log1p`` of counts normalised to 10,000 per cell
    using the cell's total count ``obs['n_counts']``, so the counts are recovered exactly as
    ``round(expm1(raw.X) * n_counts / 1e4)``.

    Returns
    -------
    anndata.AnnData
        With

        - ``X``: integer counts (``float32`` CSR matrix), 700 cells x 765 genes;
        - ``obs['cell_type']``: sorted-population labels (scanpy's ``bulk_labels``), 10 types;
        - ``obs['phase']``: cell-cycle phase (G1, S, G2M);
        - ``obs['louvain']``: Louvain clusters of the original analysis.

    Examples
    --------
    >>> import scvi_diffusion
    >>> adata = scvi_diffusion.data.pbmc68k()
    >>> adata
    AnnData object with n_obs × n_vars = 700 × 765
        obs: 'cell_type', 'phase', 'louvain'
    >>> adata.obs["cell_type"].value_counts().head(3).to_dict()
    {'Dendritic': 240, 'CD14+ Monocyte': 129, 'CD19+ B': 95}

    Raw counts, as scvi-tools models expect:

    >>> import numpy as np
    >>> bool(np.all(adata.X.data == np.round(adata.X.data)))
    True
    """
    source = sc.datasets.pbmc68k_reduced()
    log_normalized = source.raw.X
    log_normalized = (
        log_normalized.toarray() if sparse.issparse(log_normalized) else log_normalized
    )
    totals = source.obs["n_counts"].to_numpy(dtype=np.float64)[:, None]
    counts = np.rint(np.expm1(log_normalized.astype(np.float64)) * totals / 1e4)
    obs = pd.DataFrame(
        {
            "cell_type": source.obs["bulk_labels"].astype("category"),
            "phase": source.obs["phase"].astype("category"),
            "louvain": source.obs["louvain"].astype("category"),
        },
        index=source.obs_names.copy(),
    )
    var = pd.DataFrame(index=pd.Index(source.raw.var_names.copy(), name=None))
    return ad.AnnData(X=sparse.csr_matrix(counts.astype(np.float32)), obs=obs, var=var)
