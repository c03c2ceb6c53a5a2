"""Marker genes: do synthetic cells keep each cell type's fold changes against the rest?"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc

from ..data._split import _labels
from ._expression import _pearson
from ._space import _check_genes, _counts, _log_normalize


def _log_expression(adata: ad.AnnData, genes: pd.Index, target_sum: float) -> np.ndarray:
    counts, library = _counts(adata, genes)
    return _log_normalize(counts, library, target_sum)


def _fold_changes(log_expression: np.ndarray, labels: np.ndarray, group: str) -> np.ndarray:
    """Mean log expression of ``group`` minus that of every other cell, per gene."""
    inside = labels == group
    return log_expression[inside].mean(axis=0) - log_expression[~inside].mean(axis=0)


def _top_markers(
    real: ad.AnnData,
    log_expression: np.ndarray,
    labels: np.ndarray,
    groups: list[str],
    n_genes: int,
) -> dict[str, pd.Index]:
    """Each group's ``n_genes`` top up-regulated genes in the real cells (Wilcoxon scores on
    their log expression, all genes)."""
    view = ad.AnnData(
        log_expression.astype(np.float32),
        obs=pd.DataFrame({"group": pd.Categorical(labels)}, index=real.obs_names),
        var=pd.DataFrame(index=real.var_names),
    )
    ranked = sc.tl.rank_genes_groups(
        view, "group", groups=groups, method="wilcoxon", n_genes=n_genes, copy=True
    ).uns["rank_genes_groups"]["names"]
    return {group: pd.Index(ranked[group]) for group in groups}


def _through_origin_slope(x: np.ndarray, y: np.ndarray) -> float:
    squares = float(np.dot(x, x))
    return float(np.dot(x, y) / squares) if squares > 0 else float("nan")


def marker_fold_changes(
    real: ad.AnnData,
    synthetic: ad.AnnData,
    condition_key: str,
    n_genes: int = 20,
    target_sum: float = 1e4,
    min_cells: int = 3,
) -> pd.DataFrame:
    """Whether synthetic cells keep the fold changes of each condition's marker genes.

    For each condition (for example each cell type) with at least ``min_cells`` cells on both
    sides and at least one other condition: its ``n_genes`` top up-regulated genes against the
    rest in the real cells (scanpy's Wilcoxon ranking on log-normalised counts), and the fold
    change of each, the mean ``log1p`` expression (normalised to ``target_sum``) of the
    condition minus that of all other cells, in the real and in the synthetic cells. A
    generator that keeps the biology reproduces them: Pearson correlation 1 and a slope
    through the origin (synthetic against real) of 1; a slope below 1 means attenuated
    markers, above 1 exaggerated ones.

    Because the genes are chosen on the real cells, their real fold changes are selected
    upwards: a second set of real cells (the floor: pass real training cells in the test
    composition as ``synthetic``) scores a slope somewhat below 1. Compare a generator with
    that floor, not with 1.

    Parameters
    ----------
    real
        Real (held-out) cells with raw counts in ``X`` and ``obs[condition_key]``.
    synthetic
        Cells to score, with counts for the real cells' genes and ``obs[condition_key]``.
    condition_key
        The obs column whose values define the groups.
    n_genes : int, default 20
        Marker genes per condition.
    target_sum : float, default 1e4
        Counts per cell after normalisation.
    min_cells : int, default 3
        Conditions with fewer cells on either side are skipped.

    Returns
    -------
    pandas.DataFrame
        One row per scored condition and a last row ``"all"`` (every condition's markers
        pooled); columns ``pearson``, ``slope`` and ``n_genes``. Per-gene fold changes are in
        ``attrs["fold_changes"]`` (columns ``condition``, ``gene``, ``real``, ``synthetic``).

    Examples
    --------
    >>> import scvi_diffusion
    >>> from scvi_diffusion import metrics
    >>> adata = scvi_diffusion.data.pbmc68k()
    >>> table = metrics.marker_fold_changes(adata, adata, "cell_type")
    >>> table.loc["all", ["pearson", "slope"]].round(6).tolist()
    [1.0, 1.0]
    """
    if n_genes < 1 or min_cells < 1:
        raise ValueError(
            f"`n_genes` and `min_cells` must be at least 1, got {n_genes} and {min_cells}."
        )
    real_labels = _labels(real, condition_key)
    synthetic_labels = _labels(synthetic, condition_key)
    _check_genes(real.var_names, synthetic)
    real_counts = pd.Series(real_labels).value_counts()
    synthetic_counts = pd.Series(synthetic_labels).value_counts()
    groups = [
        group
        for group in pd.unique(real_labels)
        if real_counts[group] >= min_cells
        and synthetic_counts.get(group, 0) >= min_cells
        and len(real_labels) - real_counts[group] >= min_cells
        and len(synthetic_labels) - synthetic_counts[group] >= min_cells
    ]
    if not groups:
        raise ValueError(
            f"No value of obs[{condition_key!r}] has at least {min_cells} cells, and as many "
            "other cells, on both sides; nothing to score."
        )
    real_log_all_genes = _log_expression(real, real.var_names, target_sum)
    markers = _top_markers(real, real_log_all_genes, real_labels, groups, n_genes)
    genes = pd.Index(np.unique(np.concatenate([list(m) for m in markers.values()])))
    real_log = real_log_all_genes[:, real.var_names.get_indexer(genes)]
    synthetic_log = _log_expression(synthetic, genes, target_sum)

    records = []
    for group in groups:
        columns = genes.get_indexer(markers[group])
        real_fc = _fold_changes(real_log, real_labels, group)[columns]
        synthetic_fc = _fold_changes(synthetic_log, synthetic_labels, group)[columns]
        records += [
            {"condition": group, "gene": gene, "real": a, "synthetic": b}
            for gene, a, b in zip(markers[group], real_fc, synthetic_fc, strict=True)
        ]
    fold_changes = pd.DataFrame.from_records(records)

    def summary(frame: pd.DataFrame) -> dict[str, float]:
        x, y = frame["real"].to_numpy(), frame["synthetic"].to_numpy()
        return {"pearson": _pearson(x, y), "slope": _through_origin_slope(x, y), "n_genes": len(x)}

    by_condition = fold_changes.groupby("condition", sort=False)
    rows = {group: summary(frame) for group, frame in by_condition}
    rows["all"] = summary(fold_changes)
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.attrs["fold_changes"] = fold_changes
    return table
