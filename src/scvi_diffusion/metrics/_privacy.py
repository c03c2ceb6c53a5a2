"""Whether synthetic cells give away their training cells: distances to the closest record, the
memorised fraction, and membership inference from per-cell scores."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.neighbors import NearestNeighbors

from ._distances import _as_points
from ._space import shared_space

MEMORISED_RATIO = 1 / 3
"""A cell counts as memorised when its nearest training cell is under this share of the
distance to the second nearest (the threshold of image-diffusion memorisation studies)."""
LOW_FPR = 0.01


def _nearest(reference: np.ndarray, points: np.ndarray, n_neighbors: int = 1) -> np.ndarray:
    """Euclidean distances from each point to its ``n_neighbors`` nearest reference points."""
    search = NearestNeighbors(n_neighbors=n_neighbors).fit(reference)
    return search.kneighbors(points, return_distance=True)[0]


def closest_record_share(
    train: np.ndarray, holdout: np.ndarray, synthetic: np.ndarray
) -> dict[str, float]:
    """Share of synthetic cells nearer a training cell than any holdout cell.

    The distance to closest record (DCR) test of synthetic-data privacy: if the generator
    learnt the distribution and not its training cells, a synthetic cell's nearest real cell is
    a training cell as often as for any new cell of that distribution, that is with probability
    ``n_train / (n_train + n_holdout)`` (0.5 for a 50/50 split); copies of training cells push
    the share to 1. Ties count one half.

    Parameters
    ----------
    train, holdout, synthetic : numpy.ndarray
        Coordinates (cells x dimensions, e.g. PCA) of training cells, real cells the
        generator never saw, and synthetic cells, in one space.

    Returns
    -------
    dict
        ``share``, ``expected_share`` (its value without copying), ``synthetic_to_train`` and
        ``synthetic_to_holdout`` (median distance of a synthetic cell to its nearest training
        and holdout cell) and ``holdout_to_train`` (the same for holdout cells: how far a new
        real cell is from the training cells).

    Raises
    ------
    ValueError
        A set is not 2-D or is empty, or they differ in dimensions.

    Examples
    --------
    Independent draws of one distribution show no sign of copying; noisy copies of the
    training cells do:

    >>> import numpy as np
    >>> from scvi_diffusion import metrics
    >>> rng = np.random.default_rng(0)
    >>> train, holdout, fresh = (rng.normal(size=(500, 10)) for _ in range(3))
    >>> scores = metrics.closest_record_share(train, holdout, fresh)
    >>> round(scores["share"], 1), scores["expected_share"]
    (0.5, 0.5)
    >>> copies = train + rng.normal(scale=0.1, size=train.shape)
    >>> metrics.closest_record_share(train, holdout, copies)["share"]
    1.0
    """
    train, holdout, synthetic = (
        _as_points(points, name)
        for points, name in ((train, "train"), (holdout, "holdout"), (synthetic, "synthetic"))
    )
    if not train.shape[1] == holdout.shape[1] == synthetic.shape[1]:
        raise ValueError(
            "`train`, `holdout` and `synthetic` differ in dimensions: "
            f"{train.shape[1]}, {holdout.shape[1]} and {synthetic.shape[1]}."
        )
    to_train = _nearest(train, synthetic)[:, 0]
    to_holdout = _nearest(holdout, synthetic)[:, 0]
    share = np.mean((to_train < to_holdout) + 0.5 * (to_train == to_holdout))
    return {
        "share": float(share),
        "expected_share": len(train) / (len(train) + len(holdout)),
        "synthetic_to_train": float(np.median(to_train)),
        "synthetic_to_holdout": float(np.median(to_holdout)),
        "holdout_to_train": float(np.median(_nearest(train, holdout)[:, 0])),
    }


def memorized_fraction(
    train: np.ndarray, points: np.ndarray, ratio: float = MEMORISED_RATIO
) -> float:
    """Share of cells whose nearest training cell is much nearer than the second nearest.

    A cell is counted as memorised when the distance to its nearest training cell is under
    ``ratio`` times the distance to the second nearest: it sits on one training cell rather
    than among several. Real cells do this too, where a few training cells are isolated, so
    compare the synthetic cells' fraction with that of holdout cells (real cells the
    generator never saw), as :func:`privacy_scores` does.

    Parameters
    ----------
    train : numpy.ndarray
        Training cells' coordinates, at least 2 cells.
    points : numpy.ndarray
        Coordinates of the cells to check (synthetic, or holdout for the baseline).
    ratio : float, default 1/3
        The threshold on nearest over second-nearest distance.

    Returns
    -------
    float
        The memorised fraction. A cell on a duplicated training cell (both distances 0)
        counts as memorised.

    Raises
    ------
    ValueError
        A set is not 2-D, ``train`` has fewer than 2 cells, they differ in dimensions, or
        ``ratio`` is not in (0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> from scvi_diffusion import metrics
    >>> rng = np.random.default_rng(0)
    >>> train, fresh = rng.normal(size=(500, 10)), rng.normal(size=(500, 10))
    >>> metrics.memorized_fraction(train, fresh)
    0.0
    >>> metrics.memorized_fraction(train, train[:100] + 0.01)
    1.0
    """
    if not 0 < ratio <= 1:
        raise ValueError(f"`ratio` must be in (0, 1], got {ratio!r}.")
    train = _as_points(train, "train", min_points=2)
    points = _as_points(points, "points")
    if train.shape[1] != points.shape[1]:
        raise ValueError(
            f"`train` and `points` differ in dimensions: {train.shape[1]} and {points.shape[1]}."
        )
    distances = _nearest(train, points, n_neighbors=2)
    nearest, second = distances[:, 0], distances[:, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = np.where(second > 0, nearest / second, 0.0)
    return float(np.mean(ratios < ratio))


def membership_inference(
    train_scores: np.ndarray,
    holdout_scores: np.ndarray,
    train_groups: np.ndarray | None = None,
    holdout_groups: np.ndarray | None = None,
) -> dict[str, float]:
    """How well per-cell scores tell training cells from holdout cells.

    The scores are an attacker's: higher should mean "was in the training set" (for a
    per-cell loss, pass its negative). An attack no better than chance has ROC-AUC 0.5 and a
    true-positive rate equal to the false-positive rate; the true-positive rate at 1% false
    positives says whether a few training cells can be picked out with confidence, which an
    AUC near 0.5 can hide. With groups (donors), each group's score is its cells' mean, and
    groups rather than cells are told apart: the unit whose privacy a per-donor data release
    protects.

    Parameters
    ----------
    train_scores, holdout_scores : numpy.ndarray
        One score per training and per holdout cell.
    train_groups, holdout_groups : numpy.ndarray, optional
        Group (donor) of each cell; give both or neither. A group must not be on both sides.

    Returns
    -------
    dict
        ``auc``, ``tpr_at_1pct_fpr``, ``n_train`` and ``n_holdout`` (cells, or groups).

    Raises
    ------
    ValueError
        Scores are not 1-D, not finite, or either side has none; groups of the wrong length,
        only one side's groups, or a group on both sides.

    Examples
    --------
    Scores of one distribution on both sides tell nothing; a loss lower on training cells
    does:

    >>> import numpy as np
    >>> from scvi_diffusion import metrics
    >>> rng = np.random.default_rng(0)
    >>> same = metrics.membership_inference(rng.normal(size=2000), rng.normal(size=2000))
    >>> round(same["auc"], 2)
    0.5
    >>> train_loss, holdout_loss = rng.normal(0.0, 1, 2000), rng.normal(1.0, 1, 2000)
    >>> auc = metrics.membership_inference(-train_loss, -holdout_loss)["auc"]
    >>> round(auc, 1)  # a shift of one sd: Φ(1/√2) = 0.76
    0.8
    """
    scores = {}
    for name, values in (("train_scores", train_scores), ("holdout_scores", holdout_scores)):
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 1 or values.size == 0 or not np.isfinite(values).all():
            raise ValueError(f"`{name}` must be a non-empty 1-D array of finite numbers.")
        scores[name] = values
    train_scores, holdout_scores = scores["train_scores"], scores["holdout_scores"]
    if (train_groups is None) != (holdout_groups is None):
        raise ValueError("Give `train_groups` and `holdout_groups` together, or neither.")
    if train_groups is not None:
        train_scores, holdout_scores = _group_means(
            train_scores, holdout_scores, train_groups, holdout_groups
        )
    labels = np.repeat([1, 0], [len(train_scores), len(holdout_scores)])
    values = np.concatenate([train_scores, holdout_scores])
    false_positive, true_positive, _ = roc_curve(labels, values)
    return {
        "auc": float(roc_auc_score(labels, values)),
        "tpr_at_1pct_fpr": float(true_positive[false_positive <= LOW_FPR].max()),
        "n_train": len(train_scores),
        "n_holdout": len(holdout_scores),
    }


def _group_means(
    train_scores: np.ndarray, holdout_scores: np.ndarray, train_groups, holdout_groups
) -> tuple[np.ndarray, np.ndarray]:
    """Each group's mean score, per side; groups checked."""
    means = []
    for name, scores, groups in (
        ("train", train_scores, train_groups),
        ("holdout", holdout_scores, holdout_groups),
    ):
        groups = np.asarray(groups, dtype=object)
        if groups.shape != scores.shape:
            raise ValueError(
                f"`{name}_groups` has {groups.size} entries for {scores.size} scores."
            )
        means.append(pd.Series(scores).groupby(groups.astype(str)).mean())
    both = means[0].index.intersection(means[1].index)
    if len(both):
        raise ValueError(
            f"Groups {list(both)[:5]} are on both sides: a donor is either in the training "
            "set or held out."
        )
    return means[0].to_numpy(), means[1].to_numpy()


def privacy_scores(
    train: ad.AnnData,
    holdout: ad.AnnData,
    synthetic: ad.AnnData,
    n_top_genes: int = 2000,
    n_comps: int = 30,
) -> pd.Series:
    """The distance-based privacy scores of synthetic cells, in one PCA of real cells.

    Training and holdout cells (never trained on) together fit the :func:`shared_space`, so
    neither is favoured; the synthetic cells are projected into it. Then
    :func:`closest_record_share` and :func:`memorized_fraction` of the synthetic cells beside
    that of the holdout cells.

    Parameters
    ----------
    train, holdout, synthetic : anndata.AnnData
        Counts of the generator's training cells, of real cells it never saw, and of the
        synthetic cells (with the real genes, in any order).
    n_top_genes, n_comps : int, default 2000 and 30
        See :func:`shared_space`.

    Returns
    -------
    pandas.Series
        ``closest_record_share`` and ``expected_closest_record_share`` (its value without
        copying: 0.5 for a 50/50 split), ``synthetic_to_train``,
        ``synthetic_to_holdout``, ``holdout_to_train`` (median nearest distances),
        ``memorized_fraction`` and ``holdout_memorized_fraction``.

    Raises
    ------
    ValueError
        A set lacks the real genes or has too few cells.

    Examples
    --------
    Real cells stand in for synthetic ones: on the bundled PBMCs, with training and holdout
    cells of equal number, other real cells give no sign of copying, the training cells
    themselves do.

    >>> import scvi_diffusion
    >>> from scvi_diffusion import metrics
    >>> adata = scvi_diffusion.data.pbmc68k()
    >>> train, rest = metrics.stratified_split(adata, "cell_type", test_size=2 / 3)
    >>> holdout, other = metrics.stratified_split(rest, "cell_type", test_size=0.5)
    >>> fresh = metrics.privacy_scores(train, holdout, other)
    >>> float(fresh["expected_closest_record_share"])
    0.5
    >>> bool(0.35 < fresh["closest_record_share"] < 0.65)
    True
    >>> float(metrics.privacy_scores(train, holdout, train[:100])["closest_record_share"])
    1.0
    """
    real = ad.concat([train, holdout], label="_side", keys=["train", "holdout"], index_unique="-")
    space = shared_space(real, synthetic, n_top_genes=n_top_genes, n_comps=n_comps)
    is_train = (real.obs["_side"] == "train").to_numpy()
    train_points, holdout_points = space.real_pca[is_train], space.real_pca[~is_train]
    synthetic_points = space.synthetic_pca
    closest = closest_record_share(train_points, holdout_points, synthetic_points)
    return pd.Series(
        {
            "closest_record_share": closest["share"],
            "expected_closest_record_share": closest["expected_share"],
            "synthetic_to_train": closest["synthetic_to_train"],
            "synthetic_to_holdout": closest["synthetic_to_holdout"],
            "holdout_to_train": closest["holdout_to_train"],
            "memorized_fraction": memorized_fraction(train_points, synthetic_points),
            "holdout_memorized_fraction": memorized_fraction(train_points, holdout_points),
        },
        name="privacy",
    )
