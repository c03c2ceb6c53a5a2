"""Classifier-based metrics: real-vs-synthetic detection and conditional accuracy."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
from sklearn.base import ClassifierMixin
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from ._space import SharedSpace, shared_space

AUC_METHODS = ("knn", "random_forest")
MIN_AUC_CELLS = 4


def _detector(method: str, n_fit: int, n_neighbors: int, random_state: int) -> ClassifierMixin:
    if method == "knn":
        return KNeighborsClassifier(n_neighbors=max(1, min(n_neighbors, n_fit - 1)))
    return RandomForestClassifier(
        n_estimators=200, min_samples_leaf=2, random_state=random_state, n_jobs=1
    )


def real_vs_synthetic_auc(
    x_real: np.ndarray,
    x_synthetic: np.ndarray,
    method: str = "knn",
    n_neighbors: int = 15,
    random_state: int = 0,
) -> float:
    """ROC AUC of a classifier telling synthetic from real cells, cross-fitted.

    Cells are labelled real (0) or synthetic (1) and split into two stratified halves; a
    classifier fit on one half scores the other, then the halves swap and the two AUCs are
    averaged, so no cell is scored by a classifier that saw it.

    Parameters
    ----------
    x_real, x_synthetic : numpy.ndarray
        Points, cells x dimensions (e.g. PCA coordinates), at least 4 cells each.
    method : {"knn", "random_forest"}, default "knn"
        ``"knn"`` (k-nearest neighbours) or ``"random_forest"`` (200 trees).
    n_neighbors : int, default 15
        Neighbours of the kNN classifier (at most the fitted half's size minus 1).
    random_state : int, default 0
        Seed of the split and of the forest.

    Returns
    -------
    float
        The AUC: 0.5 when the sets are indistinguishable, 1 when perfectly separable.
        Synthetic cells that copy real ones score below 0.5: a cell's twin in the fitted half
        carries the other label.

    Raises
    ------
    ValueError
        Unknown ``method``, or either set is not 2-D or has fewer than 4 cells.

    See Also
    --------
    evaluate : Both AUCs (``knn_auc``, ``rf_auc``) against held-out real cells.

    Examples
    --------
    PCA coordinates of the bundled PBMCs; two halves of the real cells stand in for real and
    synthetic cells:

    >>> import scanpy as sc
    >>> import scvi_diffusion
    >>> from scvi_diffusion import metrics
    >>> adata = scvi_diffusion.data.pbmc68k()
    >>> sc.pp.normalize_total(adata, target_sum=1e4)
    >>> sc.pp.log1p(adata)
    >>> sc.pp.pca(adata, n_comps=30)
    >>> first, second = metrics.stratified_split(adata, "cell_type", test_size=0.5)
    >>> auc = metrics.real_vs_synthetic_auc(first.obsm["X_pca"], second.obsm["X_pca"])
    >>> 0.4 < auc < 0.6  # indistinguishable: 0.45 or 0.46, by the processor's rounding
    True

    Two cell types are told apart perfectly, by either classifier:

    >>> monocytes = adata[adata.obs["cell_type"] == "CD14+ Monocyte"].obsm["X_pca"]
    >>> b_cells = adata[adata.obs["cell_type"] == "CD19+ B"].obsm["X_pca"]
    >>> metrics.real_vs_synthetic_auc(monocytes, b_cells)
    1.0
    >>> metrics.real_vs_synthetic_auc(monocytes, b_cells, method="random_forest")
    1.0
    """
    if method not in AUC_METHODS:
        raise ValueError(f"Unknown `method` {method!r}; choose one of {AUC_METHODS}.")
    x_real = np.asarray(x_real, dtype=np.float64)
    x_synthetic = np.asarray(x_synthetic, dtype=np.float64)
    for name, points in (("x_real", x_real), ("x_synthetic", x_synthetic)):
        if points.ndim != 2 or points.shape[0] < MIN_AUC_CELLS:
            raise ValueError(
                f"`{name}` must be a 2-D array with at least {MIN_AUC_CELLS} cells, "
                f"got shape {points.shape}."
            )
    points = np.vstack([x_real, x_synthetic])
    labels = np.repeat([0, 1], [x_real.shape[0], x_synthetic.shape[0]])
    folds = StratifiedKFold(n_splits=2, shuffle=True, random_state=random_state)
    aucs = []
    for fit_rows, score_rows in folds.split(points, labels):
        classifier = _detector(method, len(fit_rows), n_neighbors, random_state)
        classifier.fit(points[fit_rows], labels[fit_rows])
        probability = classifier.predict_proba(points[score_rows])[:, 1]
        aucs.append(roc_auc_score(labels[score_rows], probability))
    return float(np.mean(aucs))


def _fit_condition_classifier(
    x_real: np.ndarray, labels: np.ndarray, random_state: int = 0
) -> Pipeline:
    """Logistic regression on standardised coordinates predicting each real cell's condition."""
    # A single condition leaves nothing to learn; predict it for every cell.
    if np.unique(labels).size < 2:
        estimator = DummyClassifier(strategy="most_frequent")
    else:
        estimator = LogisticRegression(max_iter=2000, random_state=random_state)
    return make_pipeline(StandardScaler(), estimator).fit(x_real, labels)


def _per_condition_accuracy(predicted: np.ndarray, requested: np.ndarray) -> pd.Series:
    """Fraction of cells of each requested condition predicted as that condition."""
    return pd.Series(predicted == requested).groupby(requested).mean()


def _labels(adata: ad.AnnData, condition_key: str, name: str) -> np.ndarray:
    if condition_key not in adata.obs:
        raise ValueError(
            f"{condition_key!r} is not a column of the {name} cells' obs; "
            f"available: {list(adata.obs.columns)}."
        )
    return adata.obs[condition_key].astype(str).to_numpy()


def conditional_accuracy(
    real: ad.AnnData,
    synthetic: ad.AnnData,
    condition_key: str,
    space: SharedSpace | None = None,
    average: str = "macro",
    random_state: int = 0,
) -> float:
    """Accuracy of a classifier trained on real cells at predicting synthetic cells' conditions.

    A logistic regression on the real cells' standardised PCA coordinates predicts the
    condition of every synthetic cell; no synthetic cell is filtered out.

    Parameters
    ----------
    real, synthetic : anndata.AnnData
        AnnData with counts and ``obs[condition_key]``.
    condition_key : str
        Obs column holding the condition.
    space : SharedSpace, optional
        A precomputed :func:`shared_space` of ``real`` and ``synthetic``; default: computed.
    average : {"macro", "micro"}, default "macro"
        ``"macro"``: mean of the per-condition accuracies (every requested condition weighs
        the same); ``"micro"``: fraction of all synthetic cells.
    random_state : int, default 0
        Seed of the classifier.

    Returns
    -------
    float
        The accuracy, in [0, 1].

    Raises
    ------
    ValueError
        ``condition_key`` is not a column of both obs, or ``average`` is unknown.

    Examples
    --------
    Half of the real cells stands in for the cells a trained model would generate, e.g.
    ``model.generate(conditions=real.obs[["cell_type"]])``:

    >>> import scvi_diffusion
    >>> from scvi_diffusion import metrics
    >>> adata = scvi_diffusion.data.pbmc68k()
    >>> real, synthetic = metrics.stratified_split(adata, "cell_type", test_size=0.5)
    >>> round(metrics.conditional_accuracy(real, synthetic, "cell_type"), 2)
    0.59

    Even real cells reach only about 0.6 on these ten similar sorted populations: that is the
    floor to compare generated cells with (:func:`evaluate` reports it beside them). The micro
    average weighs each type by its cells, so the abundant types dominate it:

    >>> round(metrics.conditional_accuracy(real, synthetic, "cell_type", average="micro"), 2)
    0.79
    """
    if average not in ("macro", "micro"):
        raise ValueError(f"`average` must be 'macro' or 'micro', got {average!r}.")
    real_labels = _labels(real, condition_key, "real")
    requested = _labels(synthetic, condition_key, "synthetic")
    if space is None:
        space = shared_space(real, synthetic)
    classifier = _fit_condition_classifier(space.real_pca, real_labels, random_state)
    predicted = classifier.predict(space.synthetic_pca)
    if average == "micro":
        return float(np.mean(predicted == requested))
    return float(_per_condition_accuracy(predicted, requested).mean())
