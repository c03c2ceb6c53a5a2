"""Conditions: how they are registered, their training values, and what a model can be
conditioned on."""

from ._continuous import (
    ContinuousObsField,
    ValueRange,
    check_continuous_columns,
    checked_continuous_keys,
    is_number,
    numeric_values,
    requested_values,
    vicinal_spreads,
    warn_outside_range,
)
from ._setup import check_condition_columns, checked_setup_keys, condition_keys_from_args
from ._space import ConditionSpace

__all__ = [
    "ConditionSpace",
    "ContinuousObsField",
    "ValueRange",
    "check_condition_columns",
    "check_continuous_columns",
    "checked_continuous_keys",
    "checked_setup_keys",
    "condition_keys_from_args",
    "is_number",
    "numeric_values",
    "requested_values",
    "vicinal_spreads",
    "warn_outside_range",
]
