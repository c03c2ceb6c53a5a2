"""Larger datasets bootstrapped from the bundled PBMC cells, for speed and memory benchmarks."""

from __future__ import annotations

import os
from collections.abc import Iterator
from numbers import Integral

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

from .._streaming import validate_out, write_h5ad_in_batches
from .._validation import positive_int
from ._pbmc import pbmc68k

_CHUNK = 50_000


def pbmc68k_bootstrap(
    n_obs: int = 10_000,
    n_vars: int = 2_000,
    seed: int = 0,
    out: str | os.PathLike | None = None,
) -> ad.AnnData:
    """Bootstrapped PBMC counts of any size: real cells resampled, genes extended by copies.

    For benchmarks of speed and memory at atlas scale, where only the size matters. These are
    **not** new biology: every cell is one of the 700 bundled cells
    (:func:`~scvi_diffusion.data.pbmc68k`), drawn with replacement, whose counts are redrawn as
    Poisson variables with the observed counts as means (so repeated cells differ). Beyond the
    765 measured genes, gene ``j`` copies gene ``j mod 765`` with its mean scaled by a random
    log-normal factor (named ``{gene}-copy{k}``); fewer than 765 genes keep the first ones.

    Parameters
    ----------
    n_obs : int, default 10000
        Number of cells.
    n_vars : int, default 2000
        Number of genes.
    seed : int, default 0
        Random seed.
    out : str or os.PathLike, optional
        Path of an ``.h5ad`` file: the counts are written there chunk by chunk (never held in
        memory whole) and the AnnData returned is backed by the file.

    Returns
    -------
    anndata.AnnData
        Integer counts (``float32`` CSR) in ``X``, ``obs['cell_type']`` of the drawn cells,
        ``obs['source_cell']`` naming it, and ``uns['bootstrap']`` describing the
        construction.

    Raises
    ------
    TypeError
        ``n_obs``, ``n_vars`` or ``seed`` is not an integer, or ``out`` is not a path.
    ValueError
        ``n_obs`` or ``n_vars`` is not positive, or ``out`` does not end in ``.h5ad``, is a
        folder or lies in a folder that does not exist.

    Examples
    --------
    >>> import scvi_diffusion
    >>> adata = scvi_diffusion.data.pbmc68k_bootstrap(n_obs=5_000, n_vars=2_000)
    >>> adata.shape
    (5000, 2000)
    >>> adata.var_names[[0, 765, 1530]].tolist()
    ['HES4', 'HES4-copy1', 'HES4-copy2']

    Every cell is drawn from the bundled cells (its counts redrawn):

    >>> bool(adata.obs["source_cell"].isin(scvi_diffusion.data.pbmc68k().obs_names).all())
    True

    For atlas sizes, write to disk instead of holding the counts in memory:

    >>> adata = scvi_diffusion.data.pbmc68k_bootstrap(
    ...     n_obs=2_000_000, n_vars=5_000, out="pbmc_2M.h5ad"
    ... )  # doctest: +SKIP
    """
    n_obs = positive_int("n_obs", n_obs, allow_none=False)
    n_vars = positive_int("n_vars", n_vars, allow_none=False)
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise TypeError(f"`seed` must be an integer, got {seed!r}.")
    path = validate_out(out)
    source = pbmc68k()
    rng = np.random.default_rng(seed)
    n_source_genes = source.n_vars
    gene_source = np.arange(n_vars) % n_source_genes
    copy_number = np.arange(n_vars) // n_source_genes
    scale = np.where(copy_number == 0, 1.0, rng.lognormal(0.0, 0.5, n_vars))
    names = source.var_names.to_numpy()[gene_source].astype(object)
    names = np.where(
        copy_number == 0, names, [f"{g}-copy{k}" for g, k in zip(names, copy_number, strict=True)]
    )
    # the expanded gene columns of each source cell, as a CSR matrix of means
    means = sparse.csr_matrix(source.X[:, gene_source].multiply(scale[None, :]))
    cells = rng.integers(0, source.n_obs, n_obs)
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical.from_codes(
                source.obs["cell_type"].cat.codes.to_numpy()[cells],
                categories=source.obs["cell_type"].cat.categories,
            ),
            "source_cell": source.obs_names.to_numpy()[cells],
        },
        index=pd.Index([f"boot_{i}" for i in range(n_obs)]),
    )
    var = pd.DataFrame(index=pd.Index(names, dtype=str))
    uns = {
        "bootstrap": {
            "source": "scvi_diffusion.data.pbmc68k (700 real PBMCs, 765 genes)",
            "cells": "drawn with replacement; counts redrawn as Poisson(observed count)",
            "genes": "beyond 765: copies of gene j mod 765, mean scaled by LogNormal(0, 0.5)",
            "seed": int(seed),
        }
    }

    def chunks() -> Iterator[sparse.csr_matrix]:
        for start in range(0, n_obs, _CHUNK):
            block = means[cells[start : start + _CHUNK]]
            counts = rng.poisson(block.data).astype(np.float32)
            block = sparse.csr_matrix((counts, block.indices, block.indptr), shape=block.shape)
            block.eliminate_zeros()
            yield block

    if path is None:
        return ad.AnnData(X=sparse.vstack(list(chunks()), format="csr"), obs=obs, var=var, uns=uns)
    skeleton = ad.AnnData(obs=obs, var=var, uns=uns)
    return write_h5ad_in_batches(path, skeleton, ((None, block) for block in chunks()))
