"""The real-vs-real floor, and the held-out protocol it shares with :func:`evaluate`."""

from __future__ import annotations

from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
from scipy import stats
from sklearn.pipeline import Pipeline

from ._classifiers import _fit_condition_classifier, _labels
from ._distances import median_bandwidths
from ._pairs import CELL_FRACTIONS, MIN_CELLS, _compare
from ._space import SharedSpace, _between, _check_genes, _project, _side, shared_space


def _split_halves(labels: np.ndarray, random_state: int) -> np.ndarray:
    """Seeded split into sides 0 and 1, each label's cells shared as evenly as possible."""
    rng = np.random.default_rng(random_state)
    order = rng.permutation(labels.size)
    # Sorting the shuffled cells by label and alternating sides splits every label in two.
    order = order[np.argsort(labels[order], kind="stable")]
    side = np.empty(labels.size, dtype=int)
    side[order] = np.arange(labels.size) % 2
    return side


# A PCA overfits the cells it is fit on: they spread wider along its later components than any
# projected cell, so a classifier tells them from perfect synthetic cells (on the bundled PBMCs a
# random forest separates the fit cells from held-out real cells with AUC ~0.95). Here the shared
# space is therefore fit on one half of the real cells and every comparison uses cells it was not
# fit on: the other half of the real cells against synthetic or other real cells.
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


def _redraw(
    pair: SharedSpace,
    first: np.ndarray | None,
    second: np.ndarray | None,
    rng: np.random.Generator,
) -> tuple[SharedSpace, np.ndarray | None, np.ndarray | None]:
    """The cells of both sides of ``pair`` pooled and dealt out again at random.

    Each side keeps its size (W2, the AUCs and iLISI depend on it), not its composition: a
    permutation, so the unbiased MMD² of re-draws averages 0.
    """
    real, other = _side(pair, "real"), _side(pair, "synthetic")
    pooled = {field: np.concatenate([real[field], other[field]]) for field in real}
    n_cells = pair.n_real + pair.n_synthetic
    on_first = np.zeros(n_cells, dtype=bool)
    on_first[rng.choice(n_cells, size=pair.n_real, replace=False)] = True
    redrawn = _between(
        pair,
        {field: values[on_first] for field, values in pooled.items()},
        {field: values[~on_first] for field, values in pooled.items()},
    )
    if first is None or second is None:
        return redrawn, None, None
    labels = np.concatenate([first, second])
    return redrawn, labels[on_first], labels[~on_first]


def _floor_spread(
    floor_values: pd.Series,
    pair: SharedSpace,
    first: np.ndarray | None,
    second: np.ndarray | None,
    held: _HeldOut,
    n_repeats: int,
    random_state: int,
) -> pd.DataFrame:
    """``floor_low`` and ``floor_high`` of group ``"all"``: where one more floor would fall.

    The floor is recomputed ``n_repeats`` times on re-draws of its two sides (:func:`_redraw`,
    each with its own seed for the classifiers and subsampling too). With the floor itself
    these are n = ``n_repeats`` + 1 values, and the interval is their mean
    ± t(0.975, n - 1) · sd · √(1 + 1/n), a 95% prediction interval, at least ± one cell of the
    smaller side for :data:`CELL_FRACTIONS`. Nan for the conditions' groups, and without
    repeats.
    """
    draws = [floor_values.to_numpy()]
    for repeat in range(1, n_repeats + 1):
        rng = np.random.default_rng((random_state, repeat))
        redrawn, a, b = _redraw(pair, first, second, rng)
        seed = int(rng.integers(2**31))
        # Group "all" only: every condition's group would cost one more pair of random forests
        # per repeat, and most of evaluate's time already goes to the forests.
        values = _compare(redrawn, a, b, held.classifier, [], held.bandwidths, seed)
        draws.append(values.reindex(floor_values.index).to_numpy())
    low = high = np.full(len(floor_values), np.nan)
    if n_repeats > 0:
        draws = np.column_stack(draws)
        n = draws.shape[1]
        # t, not normal, quantiles: the sd comes from a few values and is itself uncertain.
        half = stats.t.ppf(0.975, n - 1) * draws.std(axis=1, ddof=1) * np.sqrt(1 + 1 / n)
        # Fractions of cells move in steps of one cell: a floor that classifies every cell
        # right in every draw (sd 0) would otherwise call one miss among the synthetic cells
        # worse.
        metric_names = floor_values.index.get_level_values("metric")
        step = np.where(
            metric_names.isin(CELL_FRACTIONS), 1 / min(pair.n_real, pair.n_synthetic), 0.0
        )
        if second is not None:
            # group "all"'s accuracy is a macro average: one cell of a condition with n_k
            # cells moves it by 1 / (K n_k), the largest step for the rarest condition
            counts = pd.Series(second).value_counts()
            step = np.where(
                metric_names == "conditional_accuracy", 1 / (len(counts) * counts.min()), step
            )
        half = np.maximum(half, step)
        low, high = draws.mean(axis=1) - half, draws.mean(axis=1) + half
    return pd.DataFrame({"floor_low": low, "floor_high": high}, index=floor_values.index)


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
