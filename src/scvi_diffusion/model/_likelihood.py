"""The decoder's count likelihood chosen from the data: zeros beyond Poisson among neighbours."""

from __future__ import annotations

import numpy as np
from scipy import sparse
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

EXCESS_ZEROS_FOR_ZINB = 0.2
"""Median excess of zeros over Poisson at which ``gene_likelihood="auto"`` picks ZINB.

Measured (``docs/benchmarks.md``, "Realism over unlike data"): UMI counts of droplet and
plate protocols score -0.01 to 0.09 at 100 cells to all (bundled PBMCs, PBMC3K, glioblastoma
slices, CellBench CEL-seq2 and Drop-seq), where a Poisson decoder is as good as or better than
a negative binomial; full-length Smart-seq2 read counts score 0.48 to 0.51, where only a
zero-inflated negative binomial gets the zeros right.
"""
MAX_CELLS = 5000
"""Cells the statistic looks at (a seeded random subset beyond this): it is a per-gene share,
stable from a few hundred cells on, and the cost stays a few seconds at any size."""
N_NEIGHBORS = 15
N_TOP_GENES = 2000
N_COMPONENTS = 30
MIN_CELLS = 2 * N_NEIGHBORS
ZERO_RANGE = (0.02, 0.98)
"""Genes whose expected zero fraction is in this range carry the statistic: genes always or
never zero under Poisson say nothing about excess zeros."""


def excess_zeros(counts, random_state: int = 0) -> float:
    """How far zeros exceed what Poisson sampling of each cell's neighbourhood would give.

    Each cell's expected expression is that of its ``N_NEIGHBORS`` nearest other cells (PCA of
    the most variable genes of log-normalised expression), pooled: the neighbours' counts of
    the gene over their total counts, times the cell's own total. Under Poisson sampling the
    gene is zero in the cell with probability ``exp(-expected count)``. The statistic is the
    median over genes of the observed fraction of zeros minus the mean of those probabilities:
    about 0 for counts a Poisson decoder reproduces (within-neighbourhood variation adds a
    little), and a large share of cells for dropout-prone full-length read counts.

    Parameters
    ----------
    counts
        Cells x genes raw counts: dense, sparse, or an on-disk (backed) AnnData's matrix.
    random_state
        Seed of the subset of cells beyond ``MAX_CELLS``.

    Returns
    -------
    float
        The median excess, nan with fewer than ``MIN_CELLS`` cells with counts or no gene in
        ``ZERO_RANGE``.
    """
    n_cells = counts.shape[0]
    rows = np.arange(n_cells)
    if n_cells > MAX_CELLS:
        rows = np.sort(np.random.default_rng(random_state).choice(n_cells, MAX_CELLS, False))
    # indexing reads the rows of on-disk (backed) matrices too, in increasing order
    counts = sparse.csr_matrix(counts[rows], dtype=np.float64)
    library = np.asarray(counts.sum(axis=1)).ravel()
    cells = np.flatnonzero(library > 0)
    if len(cells) < MIN_CELLS:
        return float("nan")
    counts, library = counts[cells], library[cells]
    log_expression = counts.multiply(1e4 / library[:, None]).tocsr().log1p()
    # the most variable genes of log-normalised expression: scanpy's variable-gene models fail
    # on genes detected in a few cells of small subsets
    squares = np.asarray(log_expression.multiply(log_expression).mean(axis=0)).ravel()
    variance = squares - np.asarray(log_expression.mean(axis=0)).ravel() ** 2
    genes = np.sort(np.argsort(-variance)[:N_TOP_GENES])
    gene_counts = counts[:, genes].toarray()
    pca = PCA(min(N_COMPONENTS, len(cells) - 1, len(genes)), random_state=random_state)
    coordinates = pca.fit_transform(log_expression[:, genes].toarray())
    neighbours = (
        NearestNeighbors(n_neighbors=N_NEIGHBORS + 1)
        .fit(coordinates)
        .kneighbors(return_distance=False)
    )
    rate = gene_counts[neighbours].sum(axis=1) / library[neighbours].sum(axis=1)[:, None]
    expected_zeros = np.exp(-rate * library[:, None]).mean(axis=0)
    observed_zeros = (gene_counts == 0).mean(axis=0)
    informative = (expected_zeros > ZERO_RANGE[0]) & (expected_zeros < ZERO_RANGE[1])
    if not informative.any():
        return float("nan")
    return float(np.median(observed_zeros[informative] - expected_zeros[informative]))


def choose_gene_likelihood(counts, random_state: int = 0) -> dict:
    """``gene_likelihood="auto"``: ``"zinb"`` where zeros exceed Poisson's by at least
    :data:`EXCESS_ZEROS_FOR_ZINB` (:func:`excess_zeros`), else ``"poisson"``; with the
    statistic and the rule, as recorded in the model and in ``uns["scdiffusion"]``."""
    excess = excess_zeros(counts, random_state)
    likelihood = "zinb" if excess >= EXCESS_ZEROS_FOR_ZINB else "poisson"
    return {
        "gene_likelihood": likelihood,
        "excess_zeros": round(excess, 4) if np.isfinite(excess) else None,
        "rule": (
            f"zinb if the median excess of zeros over Poisson among {N_NEIGHBORS} nearest "
            f"cells is at least {EXCESS_ZEROS_FOR_ZINB}, else poisson"
        ),
    }
