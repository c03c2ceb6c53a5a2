"""What a trained model can be conditioned on, and requested values checked against it."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

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

    def validate_values(self, key: str, values) -> pd.Categorical | np.ndarray:
        """Check requested values against the training categories (a continuous condition's:
        numbers, with a warning outside the training range)."""
        if key in self.values:
            return requested_values(key, values, self.values[key])
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
