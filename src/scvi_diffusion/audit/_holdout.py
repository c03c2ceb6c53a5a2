"""The cells an audit reads besides the training cells: a holdout checked against them, any
cells' registered counts as a bare AnnData, and the stand-in cells that carry new cells' counts
and batches (checked) through the training cells' registration, with placeholder conditions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import anndata as ad
import pandas as pd

if TYPE_CHECKING:
    from ..conditions import ValueRange


def checked_holdout(
    holdout, genes: pd.Index, training_obs: pd.DataFrame, donor_key: str | None
) -> ad.AnnData:
    """``holdout`` restricted to the training genes, after checking it can be audited.

    Parameters
    ----------
    holdout
        Real cells the model was not trained on.
    genes
        The training genes, in order.
    training_obs
        The training cells' obs (their names, and the donor column with ``donor_key``).
    donor_key
        Obs column with each cell's donor, or None.

    Returns
    -------
    anndata.AnnData
        ``holdout``, or a view of it with the training genes in their order.

    Raises
    ------
    TypeError
        ``holdout`` is not an AnnData.
    ValueError
        ``holdout`` lacks training genes, has fewer than 4 cells or shares cells with the
        training cells; ``donor_key`` is missing from either side or a donor is on both.
    """
    if not isinstance(holdout, ad.AnnData):
        raise TypeError(f"`holdout` must be an AnnData, got {type(holdout).__name__}.")
    missing = genes.difference(holdout.var_names)
    if len(missing):
        raise ValueError(
            f"`holdout` lacks {len(missing)} training genes (e.g. {list(missing[:3])}); "
            "give it the genes the model was trained on."
        )
    if holdout.n_obs < 4:
        raise ValueError(f"`holdout` needs at least 4 cells, got {holdout.n_obs}.")
    shared = training_obs.index.intersection(holdout.obs_names)
    if len(shared):
        raise ValueError(
            f"`holdout` shares {len(shared)} cells with the training cells (e.g. "
            f"{list(shared[:3])}): holdout cells must be cells the model never saw. If "
            "they are other cells with the same names, rename them."
        )
    if donor_key is not None:
        _check_donors(training_obs, holdout.obs, donor_key)
    return holdout[:, genes] if not holdout.var_names.equals(genes) else holdout


def _check_donors(training_obs: pd.DataFrame, holdout_obs: pd.DataFrame, donor_key: str):
    """Both sides have the donor column, and no donor is on both."""
    for name, obs in (("the training cells", training_obs), ("`holdout`", holdout_obs)):
        if donor_key not in obs:
            raise ValueError(f"`donor_key` {donor_key!r} is not a column of {name}' obs.")
    both = set(training_obs[donor_key].astype(str)) & set(holdout_obs[donor_key].astype(str))
    if both:
        raise ValueError(
            f"Donors {sorted(both)[:5]} are in both the training cells and `holdout`; "
            "for a donor-level audit hold out whole donors."
        )


def counts_of(cells: ad.AnnData, layer: str | None) -> ad.AnnData:
    """The registered counts of ``cells`` as a bare AnnData.

    Parameters
    ----------
    cells
        Cells with counts in ``X`` or in ``layer``.
    layer
        The registered layer of counts, or None for ``X``.

    Returns
    -------
    anndata.AnnData
        The counts in ``X``, with the cells' and genes' names and nothing else.
    """
    counts = cells.X if layer is None else cells.layers[layer]
    return ad.AnnData(
        counts,
        obs=pd.DataFrame(index=cells.obs_names.copy()),
        var=pd.DataFrame(index=cells.var_names.copy()),
    )


def stand_in_cells(
    adata: ad.AnnData,
    genes: pd.Index,
    training_obs: pd.DataFrame,
    *,
    batch_key: str | None,
    layer: str | None,
    categories: Mapping[str, pd.Index],
    value_ranges: Mapping[str, ValueRange],
) -> ad.AnnData:
    """``adata``'s counts and batches (checked), with placeholder conditions.

    The stand-in cells are to be registered like the training cells: only the autoencoder reads
    what is registered from them, and the cells' own conditions (unseen categories included)
    reach the denoiser separately.

    Parameters
    ----------
    adata
        Cells to score, with the training genes and the registered obs columns.
    genes
        The training genes, in order.
    training_obs
        The training cells' obs (their batches, with ``batch_key``).
    batch_key
        The registered batch column, or None.
    layer
        The registered layer of counts, or None for ``X``.
    categories
        The training categories of each categorical condition, in registration order.
    value_ranges
        The training statistics of each continuous condition, in registration order.

    Returns
    -------
    anndata.AnnData
        ``adata``'s counts over the training genes (also in ``layer``), its batches, the first
        training category of each categorical condition and the training mean of each
        continuous one, not yet registered.

    Raises
    ------
    ValueError
        ``adata`` lacks training genes or registered columns, or has batches the model was not
        trained on.
    """
    missing = genes.difference(adata.var_names)
    if len(missing):
        raise ValueError(
            f"`adata` lacks {len(missing)} training genes (e.g. {list(missing[:3])})."
        )
    keys = [*categories, *value_ranges]
    absent = [k for k in [*keys, *([batch_key] if batch_key else [])] if k not in adata.obs]
    if absent:
        raise ValueError(
            f"`adata.obs` lacks the registered columns {absent}; the model reads each "
            "cell's conditions from them (missing values are allowed)."
        )
    obs = pd.DataFrame(index=adata.obs_names.copy())
    if batch_key:
        obs[batch_key] = _training_batches(adata.obs, training_obs, batch_key)
    for key, known in categories.items():
        obs[key] = pd.Categorical([known[0]] * adata.n_obs)
    for key, value_range in value_ranges.items():
        obs[key] = float(value_range.mean)
    stand_in = counts_of(adata[:, genes], layer)
    stand_in.obs = obs
    if layer is not None:
        stand_in.layers[layer] = stand_in.X
    return stand_in


def _training_batches(
    obs: pd.DataFrame, training_obs: pd.DataFrame, batch_key: str
) -> pd.Categorical:
    """Cells' batches with the training batches as categories, after checking each is one."""
    unseen = set(obs[batch_key].astype(str)) - set(training_obs[batch_key].astype(str))
    if unseen:
        raise ValueError(
            f"Batches {sorted(unseen)[:5]} of `adata.obs[{batch_key!r}]` were not in "
            "training; the autoencoder can only encode cells of training batches."
        )
    return pd.Categorical(
        obs[batch_key].astype(str), categories=training_obs[batch_key].astype(str).unique()
    )
