"""Step 2: the requested conditions, one row per cell to generate.

Conditions come as keywords (``cell_type=``, ``tissue=``, any registered column), as a dict
(a value, or one value per cell) or as a table (one row per cell). They become one table with
a column per requested condition, its values checked against the training categories (numbers
for a continuous condition), and the number of cells they imply checked against ``n``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from .._constants import DEFAULT_N_CELLS
from .._validation import positive_int
from ..conditions import ConditionSpace


def _collected(
    space: ConditionSpace, role_values: Mapping[str, object], conditions
) -> tuple[dict[str, object], int | None]:
    """The requested values by resolved condition (keywords first), and the number of rows
    of a table of conditions (None without one)."""
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

    if isinstance(conditions, pd.Series):
        conditions = conditions.to_frame()
    if isinstance(conditions, pd.DataFrame):
        if conditions.shape[0] == 0:
            raise ValueError("`conditions` is an empty DataFrame; give one row per cell.")
        for column in conditions.columns:
            add(column, conditions[column].to_numpy())
        return requested, conditions.shape[0]
    if isinstance(conditions, Mapping):
        for name, value in conditions.items():
            add(name, value)
    elif conditions is not None:
        raise TypeError(
            "`conditions` must be a dict (condition -> value), a pandas DataFrame with one row "
            f"per cell, or None; got {type(conditions).__name__}."
        )
    return requested, None


def _n_cells(
    n: int | None,
    lengths: dict[str, int],
    table_length: int | None,
    per_source_cell: bool,
) -> int:
    """The number of cells: ``n``, the table's rows or the per-cell values' length (which
    must agree), else :data:`DEFAULT_N_CELLS`."""
    count = f"The {n} source cells do not" if per_source_cell else f"`n`={n} does not"
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
    return DEFAULT_N_CELLS if n is None else n


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
    requested, table_length = _collected(space, role_values, conditions)
    lengths = {
        key: len(value)
        for key, value in requested.items()
        if not (isinstance(value, (str, bytes)) or np.ndim(value) == 0)
    }
    n = _n_cells(n, lengths, table_length, per_source_cell)
    frame = pd.DataFrame(index=pd.RangeIndex(n))
    for key, value in requested.items():
        values = np.repeat(np.asarray([value], dtype=object), n) if key not in lengths else value
        frame[key] = space.validate_values(key, values)
    return frame
