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
    adata : anndata.AnnData
        AnnData to split (not modified).
    condition_key : str
        Obs column whose proportions both parts keep.
    test_size : float, default 0.3
        Fraction of cells held out, in (0, 1).
    random_state : int, default 0
        Seed of the split.

    Returns
    -------
    train : anndata.AnnData
        The training cells, a new AnnData (cells in their original order).
    test : anndata.AnnData
        The held-out test cells, a new AnnData (cells in their original order).

    Raises
    ------
    ValueError
        ``test_size`` is not in (0, 1), ``obs[condition_key]`` is missing or has missing
        values, or (scikit-learn's error) a condition has too few cells to be split.

    See Also
    --------
    matched_sample : A real reference in the test cells' composition.

    Examples
    --------
    >>> import scvi_diffusion
    >>> from scvi_diffusion import metrics
    >>> adata = scvi_diffusion.data.pbmc68k()
    >>> train, test = metrics.stratified_split(adata, "cell_type")
    >>> train.n_obs, test.n_obs
    (490, 210)

    Both parts keep the cell-type proportions:

    >>> def dendritic_fraction(cells):
    ...     return round(float((cells.obs["cell_type"] == "Dendritic").mean()), 2)
    >>> dendritic_fraction(adata), dendritic_fraction(train), dendritic_fraction(test)
    (0.34, 0.34, 0.34)

    Then train on ``train`` and compare generated cells with ``test``:

    >>> from scvi_diffusion import ScDiffusion
    >>> ScDiffusion.setup_anndata(train, cell_type_key="cell_type")  # doctest: +SKIP
    >>> model = ScDiffusion(train)  # doctest: +SKIP
    >>> model.train()  # doctest: +SKIP
    >>> synthetic = model.generate(conditions=test.obs[["cell_type"]])  # doctest: +SKIP
    >>> metrics.evaluate(test, synthetic, condition_key="cell_type")  # doctest: +SKIP
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
    """Draw cells of ``pool`` in the condition composition and number of ``like``.

    Passed as ``reference`` to :func:`~scvi_diffusion.metrics.evaluate`, real training cells
    drawn this way give a floor at the same sample size as synthetic cells generated in the test
    cells' composition. Cells are drawn without replacement where the pool allows.

    Parameters
    ----------
    pool : anndata.AnnData
        Cells to draw from, for example the training split.
    like : anndata.AnnData
        Cells whose composition to match, for example the test split.
    condition_key : str
        Obs column holding the condition, in both.
    random_state : int, default 0
        Seed of the draw.

    Returns
    -------
    anndata.AnnData
        A new AnnData with ``like.n_obs`` cells of ``pool``.

    Raises
    ------
    ValueError
        ``obs[condition_key]`` is missing or has missing values, or ``like`` has a condition
        that ``pool`` lacks.

    Examples
    --------
    >>> import scvi_diffusion
    >>> from scvi_diffusion import metrics
    >>> adata = scvi_diffusion.data.pbmc68k()
    >>> train, test = metrics.stratified_split(adata, "cell_type")
    >>> reference = metrics.matched_sample(train, test, "cell_type")
    >>> reference.n_obs
    210
    >>> sorted(reference.obs["cell_type"]) == sorted(test.obs["cell_type"])
    True
    >>> bool(reference.obs_names.isin(train.obs_names).all())
    True

    Generated in the test cells' composition, synthetic cells are then scored beside a floor
    of the same size:

    >>> synthetic = model.generate(conditions=test.obs[["cell_type"]])  # doctest: +SKIP
    >>> metrics.evaluate(test, synthetic, "cell_type", reference=reference)  # doctest: +SKIP
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
