"""Fidelity metrics comparing real and synthetic cells.

The AnnData-level metrics work in one :class:`SharedSpace` fit on real cells only
(log-normalised highly variable genes and a PCA); the distance, classifier and mixing metrics
take arrays of coordinates. :func:`evaluate` computes them all, overall and per condition,
against held-out real cells, beside the :func:`floor` that two sets of real cells reach.
"""

from ._classifiers import conditional_accuracy, real_vs_synthetic_auc
from ._counts import count_checks
from ._distances import mmd_rbf, wasserstein2
from ._evaluate import evaluate, floor
from ._expression import mean_expression_correlation, variance_correlation
from ._mixing import ilisi
from ._space import SharedSpace, shared_space
from ._split import matched_sample, stratified_split
from ._trajectory import trajectory_progress

__all__ = [
    "SharedSpace",
    "conditional_accuracy",
    "count_checks",
    "evaluate",
    "floor",
    "ilisi",
    "matched_sample",
    "mean_expression_correlation",
    "mmd_rbf",
    "real_vs_synthetic_auc",
    "shared_space",
    "stratified_split",
    "trajectory_progress",
    "variance_correlation",
    "wasserstein2",
]
