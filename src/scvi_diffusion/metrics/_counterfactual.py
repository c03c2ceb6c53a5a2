"""Counterfactuals of real cells: the right change, and each cell kept."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
from sklearn.metrics import r2_score

from .._validation import positive_int
from ._markers import _log_expression, _through_origin_slope
from ._space import _check_genes

CORRELATION_BLOCK = 1024
"""Counterfactuals whose correlations with the references are computed at once."""


def _standardized_rows(values: np.ndarray) -> np.ndarray:
    centered = values - values.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(centered, axis=1, keepdims=True)
    return centered / np.where(norms > 0, norms, 1.0)


def _pairing(counterfactual: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """How each counterfactual ``i`` correlates (Pearson, over genes) with reference cell ``i``
    against the other reference cells, and how often ``i`` is its best match."""
    a, b = _standardized_rows(counterfactual), _standardized_rows(reference)
    n = a.shape[0]
    own = np.empty(n)
    others = np.empty(n)
    matched = np.empty(n, dtype=bool)
    for start in range(0, n, CORRELATION_BLOCK):
        rows = np.arange(start, min(start + CORRELATION_BLOCK, n))
        correlation = a[rows] @ b.T
        own[rows] = correlation[np.arange(len(rows)), rows]
        # a single cell has no others to be compared with
        others[rows] = (correlation.sum(axis=1) - own[rows]) / (n - 1) if n > 1 else np.nan
        matched[rows] = correlation.argmax(axis=1) == rows
    return {"own": float(own.mean()), "other": float(others.mean()), "retrieval": matched.mean()}


def _mean_change_scores(
    source_mean: np.ndarray, cells_mean: np.ndarray, truth_mean: np.ndarray, n_top_genes: int
) -> dict[str, float]:
    """The mean-expression half of :func:`counterfactual_scores`, from each set's mean
    expression per gene (any number of cells in each set)."""
    true_change = truth_mean - source_mean
    top = np.argsort(-np.abs(true_change), kind="stable")[:n_top_genes]
    change = cells_mean - source_mean
    return {
        "r2_all": r2_score(truth_mean, cells_mean),
        "r2_top": r2_score(truth_mean[top], cells_mean[top]),
        "source_r2_all": r2_score(truth_mean, source_mean),
        "source_r2_top": r2_score(truth_mean[top], source_mean[top]),
        "lfc_slope": _through_origin_slope(true_change[top], change[top]),
        "lfc_pearson": float(np.corrcoef(true_change[top], change[top])[0, 1])
        if np.ptp(change[top]) > 0 and np.ptp(true_change[top]) > 0
        else float("nan"),
    }


def counterfactual_scores(
    source: ad.AnnData,
    counterfactual: ad.AnnData,
    truth: ad.AnnData,
    cell_truth: ad.AnnData | None = None,
    n_top_genes: int = 100,
    target_sum: float = 1e4,
) -> pd.Series:
    """How well counterfactuals of real cells reach the new condition and keep each cell.

    Expression is compared as log-normalised counts (each cell scaled to ``target_sum``, then
    ``log1p``), over the genes of ``source``.

    Parameters
    ----------
    source
        The real cells the counterfactuals were made from, in the same order.
    counterfactual
        One counterfactual per source cell (``generate(source=...)``), counts or normalised.
    truth
        Real cells of the source cells' kind under the new condition (other cells than the
        source's: for instance a held-out stimulated sample).
    cell_truth
        Optional: the true counterfactual of every source cell, in the same order (known in
        simulations such as :func:`scvi_diffusion.data.pbmc68k_two_factor`); expected
        counts are fine.
    n_top_genes
        Number of genes that differ most between ``truth`` and ``source`` (absolute
        difference of mean log expression) for the ``*_top`` scores.
    target_sum
        Counts per cell after normalisation.

    Returns
    -------
    pandas.Series
        - ``r2_all``, ``r2_top``: coefficient of determination (scikit-learn's ``r2_score``)
          of the counterfactuals' mean log expression against ``truth``'s, over all genes and
          over the top genes;
        - ``source_r2_all``, ``source_r2_top``: the same for the source cells unchanged, the
          baseline a counterfactual must beat;
        - ``lfc_slope``, ``lfc_pearson``: the counterfactuals' log fold changes from the
          source cells regressed (through the origin) on, and correlated with, the true ones
          (``truth`` against ``source``), over the top genes: 1 is the true change in full;
        - ``own_source_correlation``, ``other_source_correlation``: mean Pearson correlation
          (over genes) of each counterfactual with its own source cell, and with the other
          source cells; ``source_retrieval``: fraction of counterfactuals closest to their
          own source cell;
        - with ``cell_truth``: ``own_truth_correlation``, ``other_truth_correlation`` and
          ``truth_retrieval``, the same against the true counterfactuals.

    Raises
    ------
    ValueError
        The counterfactuals are not one per source cell, or an AnnData lacks genes of
        ``source``.

    Examples
    --------
    >>> import scvi_diffusion
    >>> from scvi_diffusion.metrics import counterfactual_scores
    >>> adata = scvi_diffusion.data.pbmc68k_two_factor()
    >>> b_cells = adata[adata.obs["cell_type"] == "CD19+ B"]
    >>> control = b_cells[b_cells.obs["tissue"] == "control"]
    >>> stimulated = b_cells[b_cells.obs["tissue"] == "stimulated"]
    >>> scores = counterfactual_scores(control, control, stimulated)  # no change at all
    >>> bool(scores["source_retrieval"] == 1.0), bool(scores["lfc_slope"] == 0.0)
    (True, True)
    """
    genes = source.var_names
    for name, other in (("counterfactual", counterfactual), ("truth", truth)):
        _check_genes(genes, other, name)
    if counterfactual.n_obs != source.n_obs:
        raise ValueError(
            f"Expected one counterfactual per source cell ({source.n_obs}), got "
            f"{counterfactual.n_obs}."
        )
    if cell_truth is not None:
        _check_genes(genes, cell_truth, "cell_truth")
        if cell_truth.n_obs != source.n_obs:
            raise ValueError(
                f"Expected one true counterfactual per source cell ({source.n_obs}) in "
                f"`cell_truth`, got {cell_truth.n_obs}."
            )
    n_top_genes = min(positive_int("n_top_genes", n_top_genes, allow_none=False), len(genes))
    source_log, counterfactual_log, truth_log = (
        _log_expression(adata, genes, target_sum) for adata in (source, counterfactual, truth)
    )
    scores = _mean_change_scores(
        *(values.mean(axis=0) for values in (source_log, counterfactual_log, truth_log)),
        n_top_genes,
    )
    pairing = _pairing(counterfactual_log, source_log)
    scores.update({f"{k}_source_correlation": pairing[k] for k in ("own", "other")})
    scores["source_retrieval"] = pairing["retrieval"]
    if cell_truth is not None:
        pairing = _pairing(counterfactual_log, _log_expression(cell_truth, genes, target_sum))
        scores.update({f"{k}_truth_correlation": pairing[k] for k in ("own", "other")})
        scores["truth_retrieval"] = pairing["retrieval"]
    return pd.Series({k: float(v) for k, v in scores.items()}, name="counterfactual")
