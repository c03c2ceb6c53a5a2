"""All fidelity metrics at once, overall and per condition, beside the real-vs-real floor.

A PCA overfits the cells it is fit on: they spread wider along its later components than any
projected cell, so a classifier tells them from perfect synthetic cells (on the bundled PBMCs a
random forest separates the fit cells from held-out real cells with AUC ~0.95). Here the shared
space is therefore fit on one half of the real cells and every comparison uses cells it was not
fit on: the other half of the real cells against synthetic or other real cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from ._classifiers import (
    _fit_condition_classifier,
    _labels,
    _per_condition_accuracy,
    real_vs_synthetic_auc,
)
from ._counts import _count_checks
from ._distances import median_bandwidths, mmd_rbf, wasserstein2
from ._expression import _mean_correlations, _variance_correlations
from ._mixing import ilisi
from ._space import SharedSpace, _between, _check_genes, _project, _side, shared_space

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


def _split_halves(labels: np.ndarray, random_state: int) -> np.ndarray:
    """Seeded split into sides 0 and 1, each label's cells shared as evenly as possible."""
    rng = np.random.default_rng(random_state)
    order = rng.permutation(labels.size)
    # Sorting the shuffled cells by label and alternating sides splits every label in two.
    order = order[np.argsort(labels[order], kind="stable")]
    side = np.empty(labels.size, dtype=int)
    side[order] = np.arange(labels.size) % 2
    return side


@dataclass
class _HeldOut:
    """A space fit on half of the real cells, and the other half projected into it."""

    space: SharedSpace
    cells: dict[str, np.ndarray]
    labels: np.ndarray | None
    classifier: Pipeline | None
    bandwidths: tuple[float, ...]
    n_fit: int


def _hold_out(
    real: ad.AnnData,
    labels: np.ndarray | None,
    n_top_genes: int,
    n_comps: int,
    random_state: int,
) -> _HeldOut:
    side = _split_halves(_or_zeros(labels, real.n_obs), random_state)
    fit, held_out = side == 0, side == 1
    # Views: nothing is copied or changed in `real`.
    space = shared_space(real[fit], real[held_out], n_top_genes=n_top_genes, n_comps=n_comps)
    classifier = None
    if labels is not None:
        classifier = _fit_condition_classifier(space.real_pca, labels[fit], random_state)
    return _HeldOut(
        space=space,
        cells=_side(space, "synthetic"),
        labels=None if labels is None else labels[held_out],
        classifier=classifier,
        # From held-out cells, so the kernels see real cells as they see synthetic ones.
        bandwidths=median_bandwidths(space.synthetic_pca, random_state=random_state),
        n_fit=int(fit.sum()),
    )


def _or_zeros(labels: np.ndarray | None, n: int) -> np.ndarray:
    return np.zeros(n, dtype=int) if labels is None else labels


def _floor_pair(
    held: _HeldOut,
    reference: ad.AnnData | None,
    reference_labels: np.ndarray | None,
    random_state: int,
) -> tuple[SharedSpace, np.ndarray | None, np.ndarray | None]:
    """Held-out real cells against ``reference``, or against each other in two halves."""
    if reference is not None:
        other = _project(held.space, reference, "reference")
        return _between(held.space, held.cells, other), held.labels, reference_labels
    n_held_out = held.cells["pca"].shape[0]
    side = _split_halves(_or_zeros(held.labels, n_held_out), random_state)
    pair = _between(held.space, held.cells, held.cells).subset(side == 0, side == 1)
    if held.labels is None:
        return pair, None, None
    return pair, held.labels[side == 0], held.labels[side == 1]


def _check_cells(adata: ad.AnnData, name: str, minimum: int) -> None:
    if adata.n_obs < minimum:
        raise ValueError(f"The {name} cells number {adata.n_obs}; at least {minimum} are needed.")


def _check_inputs(
    real: ad.AnnData, reference: ad.AnnData | None, synthetic: ad.AnnData | None = None
) -> None:
    # Half the real cells fit the space; without a reference the other half is halved again.
    _check_cells(real, "real", (2 if reference is not None else 4) * MIN_CELLS)
    for name, other in (("reference", reference), ("synthetic", synthetic)):
        if other is not None:
            _check_cells(other, name, MIN_CELLS)
            _check_genes(real.var_names, other, name)


def _conditions(
    condition_key: str | None, **sets: ad.AnnData | None
) -> dict[str, np.ndarray | None]:
    """Each set's condition labels as strings (None without a key or set)."""
    return {
        name: None
        if condition_key is None or adata is None
        else _labels(adata, condition_key, name)
        for name, adata in sets.items()
    }


def _groups(*labels: np.ndarray | None) -> list[str]:
    present = [values for values in labels if values is not None]
    return sorted(set(np.concatenate(present))) if present else []


def _attrs(held: _HeldOut, floor_pair: SharedSpace, reference: ad.AnnData | None) -> dict:
    return {
        "mmd_bandwidths": held.bandwidths,
        "n_fit": held.n_fit,
        "n_held_out": held.cells["pca"].shape[0],
        "floor_source": "halves" if reference is None else "reference",
        "floor_sizes": (floor_pair.n_real, floor_pair.n_synthetic),
    }


def floor(
    real: ad.AnnData,
    reference: ad.AnnData | None = None,
    condition_key: str | None = None,
    n_top_genes: int = 2000,
    n_comps: int = 30,
    random_state: int = 0,
) -> pd.DataFrame:
    """The metrics of :func:`evaluate` between two sets of real cells.

    What a perfect generator reaches. As in :func:`evaluate`, the shared space is fit on a
    seeded half of ``real`` (stratified by ``condition_key``) and the other, held-out half is
    compared: with ``reference`` (other real cells, e.g. a test set) against it, otherwise its
    two halves against each other. With the same arguments this is :func:`evaluate`'s
    ``"floor"`` column.

    Parameters
    ----------
    real : anndata.AnnData
        Real cells, raw counts in ``X``; at least 8 (16 without ``reference``).
    reference : anndata.AnnData, optional
        Other real cells with (at least) the genes of ``real``.
    condition_key : str, optional
        Obs column with the condition; adds per-condition rows and conditional accuracy.
    n_top_genes, n_comps : int, default 2000 and 30
        See :func:`shared_space`.
    random_state : int, default 0
        Seed of the splits, subsampling and classifiers.

    Returns
    -------
    pandas.DataFrame
        Indexed by (``group``, ``metric``) with one float column ``"floor"``; ``attrs`` as in
        :func:`evaluate`.

    Raises
    ------
    ValueError
        Too few cells, ``reference`` lacks genes of ``real``, or ``condition_key`` is not a
        column of their obs.

    Examples
    --------
    Monocytes and B cells of the bundled PBMCs (two types keep the example quick):

    >>> import scvi_diffusion
    >>> from scvi_diffusion import metrics
    >>> adata = scvi_diffusion.data.pbmc68k()
    >>> adata = adata[adata.obs["cell_type"].isin(["CD14+ Monocyte", "CD19+ B"])].copy()
    >>> frame = metrics.floor(adata)
    >>> frame.attrs["floor_source"], frame.attrs["floor_sizes"]
    ('halves', (56, 56))
    >>> frame.loc["all"].loc[["knn_auc", "ilisi", "library_size_ks"]].round(2)
    ... # doctest: +NORMALIZE_WHITESPACE
                     floor
    metric
    knn_auc           0.50
    ilisi             0.97
    library_size_ks   0.12
    """
    _check_inputs(real, reference)
    labels = _conditions(condition_key, real=real, reference=reference)
    held = _hold_out(real, labels["real"], n_top_genes, n_comps, random_state)
    pair, first, second = _floor_pair(held, reference, labels["reference"], random_state)
    groups = _groups(labels["real"], labels["reference"])
    values = _compare(pair, first, second, held.classifier, groups, held.bandwidths, random_state)
    frame = values.to_frame("floor")
    frame.attrs.update(n_real=real.n_obs, **_attrs(held, pair, reference))
    return frame


def evaluate(
    real: ad.AnnData,
    synthetic: ad.AnnData,
    condition_key: str | None = None,
    reference: ad.AnnData | None = None,
    n_top_genes: int = 2000,
    n_comps: int = 30,
    random_state: int = 0,
) -> pd.DataFrame:
    """Fidelity of synthetic cells: every metric, overall and per condition, beside its floor.

    A seeded half of the real cells (stratified by ``condition_key``) fits the
    :func:`shared_space` and the condition classifier; the other, held-out half is what the
    synthetic cells are compared with. Cells a PCA was fit on spread wider in it than new
    cells, so comparing them with projected cells would penalise even a perfect generator.

    Rows per group:

    - ``mean_spearman``, ``mean_pearson``, ``variance_spearman``, ``variance_pearson``: see
      :func:`mean_expression_correlation`, :func:`variance_correlation`;
    - ``mmd`` (:func:`mmd_rbf`, bandwidths from the held-out real cells, in ``attrs``), ``w2``
      (:func:`wasserstein2`), ``knn_auc`` and ``rf_auc`` (:func:`real_vs_synthetic_auc`) and
      ``ilisi`` (:func:`ilisi`, scaled), all on PCA coordinates;
    - ``conditional_accuracy`` (with ``condition_key``): in group ``"all"`` the macro average
      as in :func:`conditional_accuracy`, in a condition's group the fraction of its synthetic
      cells predicted as that condition;
    - the count checks of :func:`count_checks`.

    Group ``"all"`` holds all compared cells, each condition's group those of that condition on
    both sides. A metric is nan where either side has fewer than 4 cells.

    The ``"floor"`` column (:func:`floor`) holds the same metrics with real cells in place of
    the synthetic ones: ``reference`` if given, otherwise the held-out half is split in two.
    W2, the AUCs and iLISI depend on the sizes of the two sides, so compare them at equal
    sizes: a ``reference`` with as many cells as ``synthetic`` gives a matched floor.

    Parameters
    ----------
    real : anndata.AnnData
        Real cells, raw counts in ``X``; at least 8 (16 without ``reference``).
    synthetic : anndata.AnnData
        Synthetic cells, raw counts, with (at least) the real genes in any order.
    condition_key : str, optional
        Obs column of both (and of ``reference``) with the condition.
    reference : anndata.AnnData, optional
        Other real cells for the floor, e.g. a test set.
    n_top_genes, n_comps : int, default 2000 and 30
        See :func:`shared_space`.
    random_state : int, default 0
        Seed of the splits, subsampling and classifiers.

    Returns
    -------
    pandas.DataFrame
        Indexed by (``group``, ``metric``) with float columns ``"synthetic"`` and ``"floor"``.
        ``attrs``: ``mmd_bandwidths``, ``n_real``, ``n_synthetic``, ``n_fit`` and
        ``n_held_out`` (the real cells that fit the space and that are compared),
        ``floor_source`` (``"reference"`` or ``"halves"``) and ``floor_sizes``.

    Raises
    ------
    ValueError
        Too few cells, ``synthetic`` or ``reference`` lacks genes of ``real``, or
        ``condition_key`` is not a column of their obs.

    See Also
    --------
    stratified_split : The training and held-out test cells.
    matched_sample : A ``reference`` the size and composition of the synthetic cells.
    scvi_diffusion.pl.metrics_summary : Bar chart of the headline metrics.

    Examples
    --------
    Hold out test cells and train on the rest; monocytes and B cells of the bundled PBMCs
    keep the example quick:

    >>> import scvi_diffusion
    >>> from scvi_diffusion import metrics
    >>> adata = scvi_diffusion.data.pbmc68k()
    >>> adata = adata[adata.obs["cell_type"].isin(["CD14+ Monocyte", "CD19+ B"])].copy()
    >>> train, test = metrics.stratified_split(adata, "cell_type", test_size=0.4)
    >>> from scvi_diffusion import ScDiffusion
    >>> ScDiffusion.setup_anndata(train, cell_type_key="cell_type")  # doctest: +SKIP
    >>> model = ScDiffusion(train)  # doctest: +SKIP
    >>> model.train()  # doctest: +SKIP
    >>> synthetic = model.generate(conditions=test.obs[["cell_type"]])  # doctest: +SKIP

    Here real training cells in the test cells' composition stand in for the generated ones,
    so the synthetic column should sit at the floor:

    >>> synthetic = metrics.matched_sample(train, test, "cell_type")
    >>> frame = metrics.evaluate(test, synthetic, condition_key="cell_type")
    >>> frame.loc["all"].loc[["knn_auc", "ilisi", "conditional_accuracy"]].round(2)
    ... # doctest: +NORMALIZE_WHITESPACE
                          synthetic  floor
    metric
    knn_auc                    0.45   0.46
    ilisi                      0.99   0.94
    conditional_accuracy       1.00   1.00
    >>> sorted(frame.index.unique("group"))
    ['CD14+ Monocyte', 'CD19+ B', 'all']
    >>> frame.attrs["n_fit"], frame.attrs["n_held_out"]
    (45, 45)
    """
    _check_inputs(real, reference, synthetic)
    labels = _conditions(condition_key, real=real, synthetic=synthetic, reference=reference)
    held = _hold_out(real, labels["real"], n_top_genes, n_comps, random_state)
    pair = _between(held.space, held.cells, _project(held.space, synthetic, "synthetic"))
    floor_pair, first, second = _floor_pair(held, reference, labels["reference"], random_state)
    groups = _groups(labels["real"], labels["synthetic"], labels["reference"])
    shared = {"groups": groups, "bandwidths": held.bandwidths, "random_state": random_state}
    frame = pd.DataFrame(
        {
            "synthetic": _compare(
                pair, held.labels, labels["synthetic"], held.classifier, **shared
            ),
            "floor": _compare(floor_pair, first, second, held.classifier, **shared),
        }
    )
    frame.attrs.update(
        n_real=real.n_obs, n_synthetic=synthetic.n_obs, **_attrs(held, floor_pair, reference)
    )
    return frame
