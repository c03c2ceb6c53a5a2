"""Continuous conditions: numeric obs columns (time, dose, age) the denoiser learns as values.

A continuous condition is registered as a :class:`ContinuousObsField`, whose state registry
keeps the training values' mean, standard deviation and range: the denoiser sees each value
standardised with them, and requests outside the range are flagged. The registry is saved with
the model, so a model loaded on other data keeps its training statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype
from scvi.data.fields import NumericalObsField

from .._constants import VALUE_SPREAD_SHARE, VALUE_SPREAD_SIDES
from .._warnings import warn_user

STATISTICS = ("mean", "sd", "minimum", "maximum")


def checked_continuous_keys(keys, categorical: Sequence[str]) -> list[str]:
    """``continuous_condition_keys``, type-checked, without duplicates, none also categorical."""
    if keys is None:
        return []
    if isinstance(keys, str):
        keys = [keys]
    if not (isinstance(keys, Sequence) and all(isinstance(k, str) for k in keys)):
        raise TypeError(
            f"`continuous_condition_keys` must be a column name or a list of them, got {keys!r}."
        )
    keys = list(dict.fromkeys(keys))
    both = [k for k in keys if k in categorical]
    if both:
        raise ValueError(
            f"{both[0]!r} is registered both as a categorical and as a continuous condition; "
            "give it in `condition_keys` (labels) or in `continuous_condition_keys` (numbers), "
            "not both."
        )
    return keys


def numeric_values(
    obs: pd.DataFrame,
    key: str,
    where: str = "adata.obs",
    advice: str = "fill or drop those cells before setup_anndata",
) -> np.ndarray:
    """``obs[key]`` as floats, checked: a numeric column with finite values only. ``where``
    names ``obs`` in the errors, ``advice`` says what to do about missing values."""
    if key not in obs:
        raise ValueError(
            f"{key!r} is not a column of {where}; available columns: {list(obs.columns)}."
        )
    column = obs[key]
    if isinstance(column.dtype, pd.CategoricalDtype):
        column = column.astype(column.cat.categories.dtype)
    if is_bool_dtype(column.dtype) or not is_numeric_dtype(column.dtype):
        raise ValueError(
            f"{where}[{key!r}] is not numeric (dtype {column.dtype}); a continuous condition "
            "needs numbers (for example days or doses). Register a column of labels with "
            "`condition_keys` instead."
        )
    values = column.to_numpy(dtype=np.float64)
    bad = int((~np.isfinite(values)).sum())
    if bad:
        raise ValueError(f"{where}[{key!r}] has {bad} missing or infinite values; {advice}.")
    return values


def check_continuous_columns(obs: pd.DataFrame, keys: Sequence[str]) -> None:
    """Every continuous condition is a numeric, finite and non-constant column."""
    for key in keys:
        values = numeric_values(obs, key)
        if values.size and values.min() == values.max():
            raise ValueError(
                f"adata.obs[{key!r}] is constant ({values[0]:g} in every cell); a continuous "
                "condition needs at least two distinct values."
            )


class ContinuousObsField(NumericalObsField):
    """A numeric obs column registered as a continuous condition, with its training statistics.

    Registering records the values' mean, standard deviation and range in the state registry;
    transferring the registration to new data (cells given to ``generate(source=...)``, a model
    loaded on other data) keeps the source statistics, so values mean the same everywhere.
    """

    def register_field(self, adata) -> dict:
        super().register_field(adata)
        values = numeric_values(adata.obs, self.attr_key)
        return {
            "mean": float(values.mean()),
            "sd": float(values.std()) or 1.0,
            "minimum": float(values.min()),
            "maximum": float(values.max()),
        }

    def transfer_field(self, state_registry: dict, adata_target, **kwargs) -> dict:
        # the target's values are checked, but its statistics are not computed: the source's stay
        self.validate_field(adata_target)
        numeric_values(
            adata_target.obs,
            self.attr_key,
            advice="fill or drop those cells before giving them to the model",
        )
        return {name: state_registry[name] for name in STATISTICS}

    def get_summary_stats(self, _state_registry: dict) -> dict:
        return {}


@dataclass(frozen=True)
class ValueRange:
    """Training statistics of a continuous condition.

    Parameters
    ----------
    mean, sd
        Of the training values; the denoiser sees ``(value - mean) / sd``.
    minimum, maximum
        The training range; requests outside it are extrapolations.
    """

    mean: float
    sd: float
    minimum: float
    maximum: float

    def standardize(self, values) -> np.ndarray:
        """Values as the denoiser sees them (NaN stays NaN: not given)."""
        return ((np.asarray(values, dtype=np.float64) - self.mean) / self.sd).astype(np.float32)

    def record(self) -> dict:
        """The statistics as plain numbers, for ``uns``."""
        return {name: float(getattr(self, name)) for name in STATISTICS}


def requested_values(key: str, values, value_range: ValueRange) -> np.ndarray:
    """Requested values of a continuous condition, checked: numbers, finite; a warning for
    values outside the training range."""
    series = pd.Series(np.asarray(values, dtype=object).ravel())
    labels = [v for v in series if isinstance(v, str) or not is_number(v)]
    if labels:
        raise TypeError(
            f"{key!r} is a continuous condition: give numbers, got {labels[0]!r}. "
            f"Training values range from {value_range.minimum:g} to {value_range.maximum:g}."
        )
    numbers = series.to_numpy(dtype=np.float64)
    if not np.isfinite(numbers).all():
        raise ValueError(
            f"Condition {key!r} has missing or infinite values in "
            f"{int((~np.isfinite(numbers)).sum())} requested cells; give a number for every cell."
        )
    warn_outside_range(key, numbers, value_range)
    return numbers


def warn_outside_range(
    key: str, numbers: np.ndarray, value_range: ValueRange, what: str = ""
) -> None:
    """A UserWarning, at the user's line, if any of ``numbers`` lies outside the training
    range; ``what`` says whose values they are."""
    outside = (numbers < value_range.minimum) | (numbers > value_range.maximum)
    if outside.any():
        warn_user(
            f"{what}{key!r} = {numbers[outside][0]:g} is outside the training range "
            f"[{value_range.minimum:g}, {value_range.maximum:g}]"
            + (f" ({int(outside.sum())} cells)" if outside.sum() > 1 else "")
            + ": the model extrapolates, and its cells there are a guess rather than a learned "
            "state."
        )


def is_number(value) -> bool:
    """A real number (not a boolean)."""
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )


def vicinal_spreads(values: np.ndarray) -> dict[str, np.ndarray]:
    """For each training value, the standard deviations of the jitter the denoiser sees it with
    in training, toward the next lower and the next higher measured value
    (:data:`~scvi_diffusion._constants.VALUE_SPREAD_SIDES`): a quarter of the gap on each side,
    0 beyond the training range.

    Without it the denoiser learns only the measured values, and between two far-apart ones
    (donors aged 6 and 38) its prediction is untrained: the sampler there can run far off the
    data. With it, every point between two measured values is learnt from both (at a gap's
    middle, each side's jitter is at two standard deviations), while measured values close
    together (pseudotime, many doses) barely move, and values never mix beyond their
    neighbours.
    """
    distinct = np.unique(values)
    position = np.searchsorted(distinct, values)
    gaps = np.concatenate([[0.0], np.diff(distinct), [0.0]]) * VALUE_SPREAD_SHARE
    return dict(zip(VALUE_SPREAD_SIDES, (gaps[position], gaps[position + 1]), strict=True))
