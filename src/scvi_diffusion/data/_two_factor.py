"""Real PBMC counts with a second, known condition: a gene program switched on in half."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

from ._pbmc import pbmc68k

TISSUE_KEY = "tissue"
CONTROL, STIMULATED = "control", "stimulated"
PROGRAM_KEY = "program_gene"


def pbmc68k_two_factor(
    factor: float = 4.0,
    n_program_genes: int = 50,
    min_mean_count: float = 0.5,
    seed: int = 0,
) -> ad.AnnData:
    """:func:`pbmc68k` with a second condition whose effect is known exactly.

    A random half of the cells is labelled ``tissue="stimulated"``, the rest ``"control"``. In
    the stimulated cells the expected counts of a fixed program of ``n_program_genes`` genes
    are multiplied by ``factor``. The expected count of a program gene in a cell is taken to
    be its observed count, and the program genes' counts of every cell (control ones too, so
    both halves get the same noise) are redrawn from a Poisson distribution with that mean,
    scaled in the stimulated half. All other genes keep their real counts, and every cell keeps
    its real cell type, so both factors' truth is known: cell type from the sorted populations,
    tissue from the simulated program.

    Parameters
    ----------
    factor : float, default 4.0
        Fold change of the program's expected counts in stimulated cells (below 1 for a
        repressed program).
    n_program_genes : int, default 50
        Size of the program.
    min_mean_count : float, default 0.5
        Program genes are drawn among genes with at least this mean count per cell, so the
        change is visible in the data.
    seed : int, default 0
        Seed of the cell labels, the program and the resampling.

    Returns
    -------
    anndata.AnnData
        As :func:`pbmc68k`, plus ``obs['tissue']`` (``"control"``/``"stimulated"``),
        ``var['program_gene']`` (True for the program) and the construction in
        ``uns['two_factor']``.

    Raises
    ------
    ValueError
        ``factor`` is not a positive number other than 1, or ``n_program_genes`` exceeds the
        genes with a mean count of at least ``min_mean_count``.

    Examples
    --------
    >>> import scvi_diffusion
    >>> adata = scvi_diffusion.data.pbmc68k_two_factor()
    >>> adata.obs["tissue"].value_counts().to_dict()
    {'control': 350, 'stimulated': 350}
    >>> int(adata.var["program_gene"].sum())
    50

    Program genes are about four times higher in stimulated cells:

    >>> program = adata[:, adata.var["program_gene"]]
    >>> stimulated = (program.obs["tissue"] == "stimulated").to_numpy()
    >>> ratio = program.X[stimulated].sum() / program.X[~stimulated].sum()
    >>> round(float(ratio), 1)
    3.9

    Hold out one combination of the two factors, to test whether a model generates it:

    >>> held_out = (adata.obs["cell_type"] == "CD19+ B") & (adata.obs["tissue"] == "stimulated")
    >>> train = adata[~held_out].copy()  # no stimulated B cells to learn from
    >>> train.n_obs
    644
    """
    if not np.isfinite(factor) or factor <= 0 or factor == 1:
        raise ValueError(f"`factor` must be a positive number other than 1, got {factor!r}.")
    adata = pbmc68k()
    rng = np.random.default_rng(seed)
    counts = adata.X.toarray()
    candidates = np.flatnonzero(counts.mean(axis=0) >= min_mean_count)
    if not 0 < n_program_genes <= candidates.size:
        raise ValueError(
            f"`n_program_genes` must be in [1, {candidates.size}] (genes with a mean count of at "
            f"least {min_mean_count}), got {n_program_genes}."
        )
    program = np.sort(rng.choice(candidates, size=n_program_genes, replace=False))
    stimulated = np.zeros(adata.n_obs, dtype=bool)
    stimulated[rng.permutation(adata.n_obs)[: adata.n_obs // 2]] = True

    expected = counts[:, program].astype(np.float64)
    expected[stimulated] *= factor
    counts[:, program] = rng.poisson(expected)

    adata.X = sparse.csr_matrix(counts.astype(np.float32))
    adata.obs[TISSUE_KEY] = pd.Categorical(
        np.where(stimulated, STIMULATED, CONTROL), categories=[CONTROL, STIMULATED]
    )
    adata.var[PROGRAM_KEY] = np.isin(np.arange(adata.n_vars), program)
    adata.uns["two_factor"] = {
        "factor": float(factor),
        "n_program_genes": int(n_program_genes),
        "program_genes": adata.var_names[program].tolist(),
        "seed": int(seed),
    }
    return adata
