"""The held-out protocol: a stratified split and a real reference matched to the test cells."""

from __future__ import annotations

import anndata as ad
import numpy as np
from sklearn.model_selection import train_test_split


def _labels(adata: ad.AnnData, key: str) -> np.ndarray:
    if key not in adata.obs:
        raise ValueError(
            f"{key!r} is not a column of obs; available columns: {list(adata.obs.columns)}."
        )
    labels = adata.obs[key]
    if labels.isna().any():
        raise ValueError(f"obs[{key!r}] has missing values; fill or drop those cells first.")
    return labels.astype(str).to_numpy()


def stratified_split(
    adata: ad.AnnData, condition_key: str, test_size: float = 0.3, random_state: int = 0
) -> tuple[ad.AnnData, ad.AnnData]:
    """Split cells into training and held-out test cells, stratified by a condition.

    Train a generator on the first, score it against the second with
    :func:`~scvi_diffusion.metrics.evaluate`: the generator never sees the test cells.

    Parameters
    ----------
    adata
        AnnData to split (not modified).
    condition_key
        Obs column whose proportions both parts keep.
    test_size
        Fraction of cells held out, in (0, 1).
    random_state
        Seed of the split.

    Returns
    -------
    ``(train, test)``, two new AnnData objects.

    Examples
    --------
    >>> train, test = scvi_diffusion.metrics.stratified_split(adata, "cell_type")
    """
    if not 0 < test_size < 1:
        raise ValueError(f"`test_size` must be in (0, 1), got {test_size!r}.")
    labels = _labels(adata, condition_key)
    train_idx, test_idx = train_test_split(
        np.arange(adata.n_obs), test_size=test_size, stratify=labels, random_state=random_state
    )
    return adata[np.sort(train_idx)].copy(), adata[np.sort(test_idx)].copy()


def matched_sample(
    pool: ad.AnnData, like: ad.AnnData, condition_key: str, random_state: int = 0
) -> ad.AnnData:
    """Cells of ``pool`` drawn in the condition composition and number of ``like``.

    Passed as ``reference`` to :func:`~scvi_diffusion.metrics.evaluate`, real training cells
    drawn this way give a floor at the same sample size as synthetic cells generated in the test
    cells' composition. Cells are drawn without replacement where the pool allows.

    Parameters
    ----------
    pool
        Cells to draw from, for example the training split.
    like
        Cells whose composition to match, for example the test split.
    condition_key
        Obs column holding the condition, in both.
    random_state
        Seed of the draw.

    Returns
    -------
    A new AnnData with ``like.n_obs`` cells of ``pool``.
    """
    pool_labels = _labels(pool, condition_key)
    wanted = _labels(like, condition_key)
    missing = sorted(set(wanted) - set(pool_labels))
    if missing:
        raise ValueError(f"The pool has no cells with {condition_key} in {missing}.")
    rng = np.random.default_rng(random_state)
    values, counts = np.unique(wanted, return_counts=True)
    picked = []
    for value, count in zip(values, counts, strict=True):
        candidates = np.flatnonzero(pool_labels == value)
        picked.append(rng.choice(candidates, size=count, replace=count > len(candidates)))
    return pool[np.sort(np.concatenate(picked))].copy()
