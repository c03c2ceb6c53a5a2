"""Reference cells: the training cell each generated cell takes what diffusion does not model.

A new cell's library size and batch, and the values of the registered conditions it was not
asked for, come from a training cell with the requested conditions, drawn at random; for a
continuous condition, from training cells at the training value nearest the requested one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.neighbors import NearestNeighbors

from .._warnings import warn_user
from ..conditions import ValueRange


def training_conditions(
    reference: pd.DataFrame,
    registered: Sequence[str],
    training_obs: pd.DataFrame,
    extra: dict[str, pd.Index],
    keys: Sequence[str],
) -> pd.DataFrame:
    """The training cells' values of ``keys``: the ``registered`` conditions from the
    ``reference`` table, the others (categories ``extra``) from the training obs."""
    training = reference[list(registered)].copy()
    for key in keys:
        if key not in training.columns:
            training[key] = pd.Categorical(training_obs[key].to_numpy(), categories=extra[key])
    return training


def draw_reference_cells(
    requested: pd.DataFrame,
    training: pd.DataFrame,
    rng: np.random.Generator,
    unseen_hint: str = "",
) -> np.ndarray:
    """For every requested cell, a training cell with the same conditions.

    Reference cells provide what the diffusion does not model (library size, batch) and the
    values of registered conditions that were not requested. A combination of conditions that
    no training cell has is allowed: the last conditions are dropped until some cells match, and
    a warning says the request is outside the training distribution.

    Parameters
    ----------
    requested
        One row per cell to generate (categorical columns).
    training
        Conditions of the training cells (same columns, at least).
    rng
        Random generator.
    unseen_hint
        Sentence appended to the warning about unseen combinations.
    """
    reference = np.empty(requested.shape[0], dtype=np.int64)
    columns = list(requested.columns)
    if not columns:
        return rng.integers(0, training.shape[0], size=requested.shape[0])
    codes = {
        c: pd.Categorical(training[c], categories=requested[c].cat.categories).codes
        for c in columns
    }
    for column in columns:
        categories = requested[column].cat.categories
        seen = np.bincount(codes[column][codes[column] >= 0], minlength=len(categories)) > 0
        asked = np.unique(requested[column].cat.codes)
        never = [categories[i] for i in asked if i >= 0 and not seen[i]]
        if never:
            raise ValueError(
                f"No training cell has {column}={never[0]!r} (a category without cells); the "
                "model never saw it and cannot generate it. Values with training cells: "
                f"{list(categories[seen])}."
            )
    groups = requested.groupby(columns, observed=True, sort=False).indices
    for combination, rows in groups.items():
        combination = combination if isinstance(combination, tuple) else (combination,)
        used = len(columns)
        while True:
            mask = np.ones(training.shape[0], dtype=bool)
            for column, value in zip(columns[:used], combination[:used], strict=True):
                value_code = requested[column].cat.categories.get_loc(value)
                mask &= codes[column] == value_code
            candidates = np.flatnonzero(mask)
            if candidates.size:
                break
            used -= 1
        if used < len(columns):
            described = ", ".join(f"{c}={v!r}" for c, v in zip(columns, combination, strict=True))
            matched = dict(zip(columns[:used], combination[:used], strict=True)) or "any"
            warn_user(
                f"No training cell has {described}: this combination is outside the training "
                "distribution. Generating it by guidance; library sizes are drawn from cells with "
                f"{matched}.{unseen_hint}"
            )
        reference[rows] = rng.choice(candidates, size=len(rows), replace=True)
    return reference


def nearest_training_values(
    requested: np.ndarray, training: np.ndarray, scale: np.ndarray | None = None
) -> np.ndarray:
    """For each requested value, the nearest value that training cells have (the lower one on a
    tie): whose cells give a generated cell its library size. With several continuous
    conditions (2-d arrays, one column each), the nearest combination of values that training
    cells have, at distances measured in units of ``scale`` (one per column; default 1), so the
    match is never an unseen combination."""
    if requested.ndim == 2:
        distinct = np.unique(training, axis=0)
        if distinct.shape[1] == 1:
            return nearest_training_values(requested[:, 0], distinct[:, 0])[:, None]
        scale = np.ones(distinct.shape[1]) if scale is None else scale
        nearest = NearestNeighbors(n_neighbors=1).fit(distinct / scale)
        return distinct[nearest.kneighbors(requested / scale, return_distance=False)[:, 0]]
    distinct = np.unique(training)
    if len(distinct) == 1:
        return np.full(len(requested), distinct[0])
    position = np.clip(np.searchsorted(distinct, requested), 1, len(distinct) - 1)
    lower, upper = distinct[position - 1], distinct[position]
    return np.where(requested - lower <= upper - requested, lower, upper)


def matched_on_nearest_values(
    requested: pd.DataFrame,
    training: pd.DataFrame,
    keys: Sequence[str],
    ranges: dict[str, ValueRange] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``requested`` and ``training`` with each continuous condition of ``keys`` as categories
    of the training values, the requested values replaced by the nearest ones of the training
    cells that share the cell's requested categorical conditions (of all training cells if none
    does), so reference cells (library size, batch) are drawn as for categorical conditions:
    from training cells with the same conditions at the training values nearest the request.
    Several requested continuous conditions are matched together, to the nearest combination
    training cells have, on values standardised with ``ranges`` (the training statistics)."""
    requested, training = requested.copy(), training.copy()
    labels = [c for c in requested.columns if c not in keys]
    asked_keys = [k for k in keys if k in requested.columns]
    scale = np.array([ranges[k].sd if ranges else 1.0 for k in asked_keys])
    values = training[asked_keys].to_numpy(dtype=np.float64)
    asked = requested[asked_keys].to_numpy(dtype=np.float64)
    nearest = np.empty_like(asked)
    if asked_keys:
        groups = requested.groupby(labels, observed=True, sort=False).indices if labels else {}
        for combination, rows in (groups or {(): np.arange(len(asked))}).items():
            combination = combination if isinstance(combination, tuple) else (combination,)
            mask = np.ones(len(values), dtype=bool)
            for column, value in zip(labels, combination, strict=True):
                mask &= (training[column] == value).to_numpy()
            candidates = values[mask] if mask.any() else values
            nearest[rows] = nearest_training_values(asked[rows], candidates, scale)
    for key in keys:
        distinct = np.unique(training[key].to_numpy(dtype=np.float64))
        if key in asked_keys:
            column = nearest[:, asked_keys.index(key)]
            requested[key] = pd.Categorical(column, categories=distinct)
        training[key] = pd.Categorical(training[key].to_numpy(float), categories=distinct)
    return requested, training
