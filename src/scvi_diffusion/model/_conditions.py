"""Turning the user's condition requests into one complete assignment per generated cell."""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .._constants import DEFAULT_N_CELLS
from .._validation import check_key, positive_int
from ._continuous import ValueRange, is_number, requested_values


@dataclass
class ConditionSpace:
    """What a model can be conditioned on.

    Parameters
    ----------
    categories
        Training categories of every registered condition, keyed by obs column.
    roles
        Role name (``"cell_type"``, ``"tissue"``) to the obs column registered for it.
    extra
        Categories of obs columns of the training AnnData that were not registered; requests
        for them are honoured by a guidance classifier trained on demand.
    values
        Training statistics of every continuous condition, keyed by obs column.
    """

    categories: dict[str, pd.Index]
    roles: dict[str, str]
    extra: dict[str, pd.Index]
    values: dict[str, ValueRange] = field(default_factory=dict)

    def resolve_key(self, key) -> str:
        """Obs column for a condition name (an obs column or a role alias)."""
        if not isinstance(key, str):
            raise TypeError(
                f"Condition names must be strings, got {key!r} ({type(key).__name__})."
            )
        if key in self.categories or key in self.values:
            return key
        if key in self.roles:
            return self.roles[key]
        if key in self.extra:
            return key
        valid = (
            list(self.categories)
            + list(self.values)
            + [r for r in self.roles if r not in self.categories]
        )
        raise ValueError(
            f"Unknown condition {key!r}. Registered conditions: {valid or 'none'}"
            + (
                f"; other categorical columns of the training AnnData: {list(self.extra)}."
                if self.extra
                else "."
            )
            + " Register more with `ScDiffusion.setup_anndata(..., condition_keys=[...])`."
        )

    def categories_of(self, key: str) -> pd.Index:
        """Training categories of a resolved condition."""
        return self.categories[key] if key in self.categories else self.extra[key]

    def validate_values(
        self, key: str, values, stacklevel: int = 2
    ) -> pd.Categorical | np.ndarray:
        """Check requested values against the training categories (a continuous condition's:
        numbers, with a warning outside the training range)."""
        if key in self.values:
            return requested_values(key, values, self.values[key], stacklevel=stacklevel + 1)
        values = pd.Series(np.asarray(values, dtype=object).ravel())
        labels = [v for v in values if not isinstance(v, Hashable)]
        if labels:
            raise TypeError(
                f"Values of condition {key!r} must be category labels (strings or numbers), "
                f"got {labels[0]!r}. Valid values: {list(self.categories_of(key))}."
            )
        if values.isna().any():
            raise ValueError(
                f"Condition {key!r} has missing values (NaN/None) in {int(values.isna().sum())} "
                "requested cells; give a category for every cell."
            )
        categories = self.categories_of(key)
        known = set(categories)
        unknown = sorted({str(v) for v in values.unique() if v not in known})
        if unknown:
            numbers = all(is_number(v) for v in values if v not in known)
            raise ValueError(
                f"Unknown value(s) {unknown} for condition {key!r}. Valid values: "
                f"{list(categories)}."
                + (
                    f" {key!r} is a categorical condition: numbers are read as its labels."
                    if numbers and self.values
                    else ""
                )
            )
        return pd.Categorical(values, categories=categories)


def parse_requests(
    space: ConditionSpace,
    n: int | None,
    role_values: Mapping[str, object],
    conditions,
    per_source_cell: bool = False,
) -> pd.DataFrame:
    """One row per cell to generate, one categorical column per requested condition.

    Parameters
    ----------
    space
        The model's condition space.
    n
        Number of cells, or None (then the DataFrame's length or :data:`DEFAULT_N_CELLS`).
    role_values
        Values given as keyword arguments: the roles ``cell_type=`` and ``tissue=``, and
        registered conditions by their obs column; None values are ignored.
    conditions
        None, a dict (condition name to a value or one value per cell), or a DataFrame/Series
        with one row per cell.
    per_source_cell
        ``n`` is the number of source cells of a counterfactual (for the error messages).
    """
    n = positive_int("n", n)
    requested: dict[str, object] = {}

    def add(name, value):
        key = space.resolve_key(name)
        if key in requested:
            raise ValueError(
                f"Condition {key!r} is given twice (as {name!r} and earlier); give it once."
            )
        requested[key] = value

    for role, value in role_values.items():
        if value is None:
            continue
        if role not in space.roles and role not in space.categories and role not in space.values:
            raise ValueError(
                f"`{role}=` needs a registered {role} column: call "
                f"`ScDiffusion.setup_anndata(adata, {role}_key=...)` before creating the model."
                f" Registered conditions: {list(space.categories) or 'none'}."
            )
        add(role, value)

    table_length = None
    if conditions is None:
        pass
    elif isinstance(conditions, pd.Series):
        conditions = conditions.to_frame()
    if isinstance(conditions, pd.DataFrame):
        if conditions.shape[0] == 0:
            raise ValueError("`conditions` is an empty DataFrame; give one row per cell.")
        table_length = conditions.shape[0]
        for column in conditions.columns:
            add(column, conditions[column].to_numpy())
    elif isinstance(conditions, Mapping):
        for name, value in conditions.items():
            add(name, value)
    elif conditions is not None:
        raise TypeError(
            "`conditions` must be a dict (condition -> value), a pandas DataFrame with one row "
            f"per cell, or None; got {type(conditions).__name__}."
        )

    count = f"The {n} source cells do not" if per_source_cell else f"`n`={n} does not"
    lengths = {}
    for key, value in requested.items():
        if isinstance(value, (str, bytes)) or np.ndim(value) == 0:
            continue
        lengths[key] = len(value)
    if table_length is not None:
        if n is not None and n != table_length:
            advice = (
                "give one row per source cell"
                if per_source_cell
                else "leave `n` out to generate one cell per row"
            )
            raise ValueError(
                f"{count} match the {table_length} rows of the `conditions` DataFrame; {advice}."
            )
        n = table_length
    distinct = set(lengths.values())
    if len(distinct) > 1:
        raise ValueError(f"Per-cell condition values have different lengths: {lengths}.")
    if distinct:
        (length,) = distinct
        if n is not None and n != length:
            raise ValueError(
                f"{count} match the {length} per-cell values given for {list(lengths)}."
            )
        n = length
    n = DEFAULT_N_CELLS if n is None else n

    frame = pd.DataFrame(index=pd.RangeIndex(n))
    for key, value in requested.items():
        values = np.repeat(np.asarray([value], dtype=object), n) if key not in lengths else value
        # past validate_values, this function, the plan, generate() and its decorator
        frame[key] = space.validate_values(key, values, stacklevel=6)
    return frame


def draw_reference_cells(
    requested: pd.DataFrame,
    training: pd.DataFrame,
    rng: np.random.Generator,
    warn_unseen: bool = True,
    unseen_hint: str = "",
    stacklevel: int = 2,
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
    warn_unseen
        Warn about unseen combinations.
    unseen_hint
        Sentence appended to that warning.
    stacklevel
        Frames between the warning and the user's code, as for :func:`warnings.warn`.
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
        if used < len(columns) and warn_unseen:
            described = ", ".join(f"{c}={v!r}" for c, v in zip(columns, combination, strict=True))
            matched = dict(zip(columns[:used], combination[:used], strict=True)) or "any"
            warnings.warn(
                f"No training cell has {described}: this combination is outside the training "
                "distribution. Generating it by guidance; library sizes are drawn from cells with "
                f"{matched}.{unseen_hint}",
                UserWarning,
                stacklevel=stacklevel,
            )
        reference[rows] = rng.choice(candidates, size=len(rows), replace=True)
    return reference


def condition_keys_from_args(cell_type_key, tissue_key, condition_keys) -> list[str]:
    """The registered condition columns, in order: cell type, tissue, then the others."""
    keys = [k for k in (cell_type_key, tissue_key) if k is not None]
    if isinstance(condition_keys, str):
        condition_keys = [condition_keys]
    for key in condition_keys or []:
        if key not in keys:
            keys.append(key)
    return keys


def checked_setup_keys(layer, cell_type_key, tissue_key, condition_keys, batch_key) -> list[str]:
    """``setup_anndata``'s column arguments, type-checked; the condition columns, in order."""
    for name, value in (
        ("layer", layer),
        ("cell_type_key", cell_type_key),
        ("tissue_key", tissue_key),
        ("batch_key", batch_key),
    ):
        check_key(name, value)
    if not (
        condition_keys is None
        or isinstance(condition_keys, str)
        or (
            isinstance(condition_keys, Sequence)
            and all(isinstance(k, str) for k in condition_keys)
        )
    ):
        raise TypeError(
            f"`condition_keys` must be a column name or a list of them, got {condition_keys!r}."
        )
    return condition_keys_from_args(cell_type_key, tissue_key, condition_keys)


def check_condition_columns(adata, keys: Sequence[str]) -> None:
    """Every column of ``keys`` is in ``adata.obs`` and has no missing values."""
    for key in keys:
        if key not in adata.obs:
            raise ValueError(
                f"{key!r} is not a column of adata.obs; available columns: "
                f"{list(adata.obs.columns)}."
            )
        missing = int(adata.obs[key].isna().sum())
        if missing:
            raise ValueError(
                f"adata.obs[{key!r}] has {missing} missing values; fill or drop those "
                "cells before setup_anndata."
            )
