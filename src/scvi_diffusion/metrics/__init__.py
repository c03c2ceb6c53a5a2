"""Fidelity metrics comparing real and synthetic cells.

The AnnData-level metrics work in one :class:`SharedSpace` fit on real cells only
(log-normalised highly variable genes and a PCA); the distance, classifier and mixing metrics
take arrays of coordinates. :func:`evaluate` computes them all, overall and per condition,
against held-out real cells, beside the :func:`floor` that two sets of real cells reach and its
spread, with a verdict per metric (:func:`verdicts` tabulates the headline ones).
:func:`cfgen_scores` reproduces the protocol of published generation benchmarks (CFGen and
later), :func:`marker_fold_changes` checks that each cell type keeps its marker genes, and
:func:`counterfactual_scores` scores counterfactuals of real cells against the real change.
:func:`privacy_scores`, :func:`closest_record_share`, :func:`memorized_fraction` and
:func:`membership_inference` say whether synthetic cells give away their training cells.
"""

from ..data._split import matched_sample, stratified_split
from ._cfgen_protocol import cfgen_scores, mmd_rbf_biased, wasserstein_exact
from ._classifiers import conditional_accuracy, real_vs_synthetic_auc
from ._counterfactual import counterfactual_scores
from ._counts import count_checks
from ._distances import mmd_rbf, wasserstein2
from ._evaluate import evaluate, verdicts
from ._expression import mean_expression_correlation, variance_correlation
from ._floor import floor
from ._markers import marker_fold_changes
from ._mixing import ilisi
from ._privacy import (
    closest_record_share,
    membership_inference,
    memorized_fraction,
    privacy_scores,
)
from ._space import SharedSpace, shared_space
from ._trajectory import trajectory_progress
from ._values import value_progress

__all__ = [
    "SharedSpace",
    "cfgen_scores",
    "closest_record_share",
    "conditional_accuracy",
    "count_checks",
    "counterfactual_scores",
    "evaluate",
    "floor",
    "ilisi",
    "marker_fold_changes",
    "matched_sample",
    "mean_expression_correlation",
    "membership_inference",
    "memorized_fraction",
    "mmd_rbf",
    "mmd_rbf_biased",
    "privacy_scores",
    "real_vs_synthetic_auc",
    "shared_space",
    "stratified_split",
    "trajectory_progress",
    "value_progress",
    "variance_correlation",
    "verdicts",
    "wasserstein2",
    "wasserstein_exact",
]
