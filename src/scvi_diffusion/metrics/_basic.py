"""Shared evaluation space, mean-expression correlation and conditional accuracy."""

from __future__ import annotations

from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
from scipy import sparse, stats
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler


@dataclass
class SharedSpace:
    """Real and synthetic cells in one log-normalised gene space and one PCA."""

    genes: pd.Index
    real_log: np.ndarray
    synthetic_log: np.ndarray
    real_pca: np.ndarray
    synthetic_pca: np.ndarray


def _log_normalized(adata: ad.AnnData, genes: pd.Index, target_sum: float) -> np.ndarray:
    matrix = adata[:, genes].X
    matrix = matrix.toarray() if sparse.issparse(matrix) else np.asarray(matrix)
    matrix = matrix.astype(np.float64)
    totals = adata.X.sum(axis=1)
    totals = np.asarray(totals).ravel().astype(np.float64)
    return np.log1p(matrix / np.maximum(totals, 1e-12)[:, None] * target_sum)


def shared_space(
    real: ad.AnnData,
    synthetic: ad.AnnData,
    n_top_genes: int = 2000,
    n_comps: int = 30,
    target_sum: float = 1e4,
) -> SharedSpace:
    """Put real and synthetic counts in one space fit on the real cells only.

    normalize_total (``target_sum``) and log1p; up to ``n_top_genes`` highly variable genes
    (seurat_v3 on the real counts; all genes if there are fewer); a PCA with ``n_comps``
    components fit on the real cells, into which synthetic cells are projected after centring
    with the real means.

    Parameters
    ----------
    real, synthetic
        AnnData with counts in ``X`` and the same genes.
    n_top_genes
        Most highly variable genes kept.
    n_comps
        PCA components.
    target_sum
        Counts per cell after normalisation.

    Returns
    -------
    The :class:`SharedSpace`.
    """
    missing = real.var_names.difference(synthetic.var_names)
    if len(missing):
        raise ValueError(f"Synthetic cells lack {len(missing)} genes of the real cells.")
    if real.n_vars > n_top_genes:
        hvg = sc.pp.highly_variable_genes(
            real, n_top_genes=n_top_genes, flavor="seurat_v3", inplace=False
        )
        genes = real.var_names[hvg["highly_variable"].to_numpy()]
    else:
        genes = real.var_names
    real_log = _log_normalized(real, genes, target_sum)
    synthetic_log = _log_normalized(synthetic, genes, target_sum)
    mean = real_log.mean(axis=0)
    n_comps = min(n_comps, real_log.shape[0] - 1, real_log.shape[1])
    _, _, components = np.linalg.svd(real_log - mean, full_matrices=False)
    components = components[:n_comps]
    return SharedSpace(
        genes=genes,
        real_log=real_log,
        synthetic_log=synthetic_log,
        real_pca=(real_log - mean) @ components.T,
        synthetic_pca=(synthetic_log - mean) @ components.T,
    )


def mean_expression_correlation(
    real: ad.AnnData, synthetic: ad.AnnData, space: SharedSpace | None = None
) -> dict[str, float]:
    """Spearman and Pearson correlation of per-gene mean log-normalised expression.

    Parameters
    ----------
    real, synthetic
        AnnData with counts.
    space
        A precomputed :func:`shared_space`.

    Returns
    -------
    ``{"spearman": ..., "pearson": ...}``.
    """
    space = space or shared_space(real, synthetic)
    real_means = space.real_log.mean(axis=0)
    synthetic_means = space.synthetic_log.mean(axis=0)
    return {
        "spearman": float(stats.spearmanr(real_means, synthetic_means).statistic),
        "pearson": float(stats.pearsonr(real_means, synthetic_means).statistic),
    }


def conditional_accuracy(
    real: ad.AnnData,
    synthetic: ad.AnnData,
    condition_key: str,
    space: SharedSpace | None = None,
    average: str = "macro",
    random_state: int = 0,
) -> float:
    """Accuracy of a classifier trained on real cells at predicting synthetic cells' conditions.

    A logistic regression on the real cells' PCA coordinates predicts the condition of every
    synthetic cell; no synthetic cell is filtered out.

    Parameters
    ----------
    real, synthetic
        AnnData with counts and ``obs[condition_key]``.
    condition_key
        Obs column holding the condition.
    space
        A precomputed :func:`shared_space`.
    average
        ``"macro"``: mean of the per-condition accuracies (every requested condition weighs
        the same); ``"micro"``: fraction of all synthetic cells.
    random_state
        Seed of the classifier.

    Returns
    -------
    The accuracy, in [0, 1].
    """
    if average not in ("macro", "micro"):
        raise ValueError(f"`average` must be 'macro' or 'micro', got {average!r}.")
    for name, adata in (("real", real), ("synthetic", synthetic)):
        if condition_key not in adata.obs:
            raise ValueError(f"{condition_key!r} is not a column of the {name} cells' obs.")
    space = space or shared_space(real, synthetic)
    scaler = StandardScaler().fit(space.real_pca)
    classifier = LogisticRegression(max_iter=2000, random_state=random_state)
    classifier.fit(scaler.transform(space.real_pca), real.obs[condition_key].astype(str))
    predicted = classifier.predict(scaler.transform(space.synthetic_pca))
    requested = synthetic.obs[condition_key].astype(str).to_numpy()
    correct = predicted == requested
    if average == "micro":
        return float(correct.mean())
    return float(pd.Series(correct).groupby(requested).mean().mean())
