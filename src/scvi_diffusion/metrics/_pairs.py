"""The metrics between the two sides of one shared space, overall and per condition."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from ._classifiers import _per_condition_accuracy, real_vs_synthetic_auc
from ._counts import _count_checks
from ._distances import mmd_rbf, wasserstein2
from ._expression import _mean_correlations, _variance_correlations
from ._mixing import ilisi
from ._space import SharedSpace

MIN_CELLS = 4
"""Fewest cells on either side of a comparison for the distribution metrics."""

ALL = "all"
_PAIR_METRICS = (
    "mean_spearman",
    "mean_pearson",
    "variance_spearman",
    "variance_pearson",
    "mmd",
    "w2",
    "knn_auc",
    "rf_auc",
    "ilisi",
)
_COUNT_METRICS = (
    "zero_fraction_gene_corr",
    "zero_fraction_gene_mae",
    "zero_fraction_cell_ks",
    "library_size_ks",
    "library_size_w1",
    "mean_variance_slope_real",
    "mean_variance_slope_synthetic",
    "dispersion_mae",
    "variance_log_ratio",
    "zero_fraction_log_ratio",
)


# Which way each metric is better, for the verdicts of `evaluate`: "lower", "higher", "chance"
# (0.5 is best, both sides worse), "match" (the floor's value is best, both sides worse) or
# "none" (describes the real cells only, so nothing to judge).
DIRECTIONS = {
    "mean_spearman": "higher",
    "mean_pearson": "higher",
    "variance_spearman": "higher",
    "variance_pearson": "higher",
    "mmd": "lower",
    "w2": "lower",
    "knn_auc": "chance",
    "rf_auc": "chance",
    "ilisi": "higher",
    "conditional_accuracy": "higher",
    "zero_fraction_gene_corr": "higher",
    "zero_fraction_gene_mae": "lower",
    "zero_fraction_cell_ks": "lower",
    "library_size_ks": "lower",
    "library_size_w1": "lower",
    "mean_variance_slope_real": "none",
    "mean_variance_slope_synthetic": "match",
    "dispersion_mae": "lower",
    "variance_log_ratio": "lower",
    "zero_fraction_log_ratio": "lower",
}

# Metrics that count cells (a fraction of them, or a KS statistic between two sets of cells),
# so the floor's spread is at least one cell wide.
CELL_FRACTIONS = ("conditional_accuracy", "zero_fraction_cell_ks", "library_size_ks")

# The metrics of `verdicts` and `pl.metrics_summary`, in their order.
HEADLINE_METRICS = (
    "mmd",
    "w2",
    "knn_auc",
    "rf_auc",
    "ilisi",
    "conditional_accuracy",
    "mean_spearman",
    "library_size_ks",
)


def _metric_names(with_condition: bool) -> tuple[str, ...]:
    condition = ("conditional_accuracy",) if with_condition else ()
    return _PAIR_METRICS + condition + _COUNT_METRICS


def _pair_metrics(
    space: SharedSpace, bandwidths: tuple[float, ...], random_state: int
) -> dict[str, float]:
    """Every metric but conditional accuracy for the two sides of ``space``."""
    if space.n_real < MIN_CELLS or space.n_synthetic < MIN_CELLS:
        return dict.fromkeys(_PAIR_METRICS + _COUNT_METRICS, float("nan"))
    real, synthetic = space.real_pca, space.synthetic_pca
    means = _mean_correlations(space)
    variances = _variance_correlations(space)
    mmd = mmd_rbf(real, synthetic, bandwidths=bandwidths, random_state=random_state)
    return {
        "mean_spearman": means["spearman"],
        "mean_pearson": means["pearson"],
        "variance_spearman": variances["spearman"],
        "variance_pearson": variances["pearson"],
        "mmd": mmd["mmd"],
        "w2": wasserstein2(real, synthetic, random_state=random_state),
        "knn_auc": real_vs_synthetic_auc(real, synthetic, "knn", random_state=random_state),
        "rf_auc": real_vs_synthetic_auc(
            real, synthetic, "random_forest", random_state=random_state
        ),
        "ilisi": ilisi(*_balanced(real, synthetic, random_state)),
        **_count_checks(space),
    }


def _balanced(x: np.ndarray, y: np.ndarray, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """Both point sets subsampled to the smaller one's size.

    iLISI's ceiling depends on the two sets' proportions (scaled, 0.8 at 1:2), so sets of equal
    size keep it comparable between the synthetic cells and the floor.
    """
    rng = np.random.default_rng(random_state)
    n = min(x.shape[0], y.shape[0])
    return tuple(
        points[np.sort(rng.choice(points.shape[0], size=n, replace=False))] for points in (x, y)
    )


def _compare(
    space: SharedSpace,
    real_labels: np.ndarray | None,
    other_labels: np.ndarray | None,
    classifier: Pipeline | None,
    groups: list[str],
    bandwidths: tuple[float, ...],
    random_state: int,
) -> pd.Series:
    """All metrics between the two sides of ``space``, overall and per group.

    ``classifier`` (fit once, on other real cells) predicts the condition of the second side's
    cells for conditional accuracy.
    """
    rows = {ALL: _pair_metrics(space, bandwidths, random_state)}
    if classifier is None or real_labels is None or other_labels is None:
        return _to_series(rows, with_condition=False)
    accuracy = _per_condition_accuracy(classifier.predict(space.synthetic_pca), other_labels)
    rows[ALL]["conditional_accuracy"] = float(accuracy.mean())
    for group in groups:
        subset = space.subset(real_labels == group, other_labels == group)
        rows[group] = _pair_metrics(subset, bandwidths, random_state)
        rows[group]["conditional_accuracy"] = float(accuracy.get(group, np.nan))
    return _to_series(rows, with_condition=True)


def _to_series(rows: dict[str, dict[str, float]], with_condition: bool) -> pd.Series:
    names = _metric_names(with_condition)
    index = pd.MultiIndex.from_tuples(
        [(group, name) for group in rows for name in names], names=["group", "metric"]
    )
    values = [rows[group][name] for group in rows for name in names]
    return pd.Series(values, index=index, dtype=np.float64)
