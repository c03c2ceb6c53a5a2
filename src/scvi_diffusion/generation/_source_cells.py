"""Counterfactuals' source cells: checked, and what each keeps of them.

``generate(source=cells, conditions=...)`` changes the requested conditions of every source
cell and keeps the rest: its other registered conditions, its batch, its library size and,
where the model predicts no change, its counts. The functions here check the source cells and
take those kept values from them without touching the user's AnnData.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

from .._validation import check_genes, row_sums, validate_counts
from ..conditions import ConditionSpace, numeric_values, warn_outside_range


@dataclass(frozen=True)
class SourceCells:
    """The source cells of a counterfactual, checked, as the model needs them."""

    names: pd.Index
    """The source cells' ``obs_names``."""
    counts: sparse.csr_matrix
    """Their counts over the training genes."""
    kept: pd.DataFrame
    """The registered conditions they keep, with the training categories."""
    own: pd.DataFrame
    """The source cells' own values of the requested conditions, where the model knows them
    (missing where the column is absent or the value unknown)."""
    batch: pd.Categorical | None
    """Their batches, with the training categories (None without a batch key)."""

    @property
    def library(self) -> np.ndarray:
        """Library size of every source cell (at least 1)."""
        return np.maximum(row_sums(self.counts), 1.0)

    @property
    def n_cells(self) -> int:
        """Number of source cells."""
        return len(self.names)

    @property
    def batch_codes(self) -> np.ndarray:
        """Batch code of every source cell (all 0 without a batch key)."""
        if self.batch is None:
            return np.zeros(self.n_cells, dtype=np.int64)
        return np.asarray(self.batch.codes, dtype=np.int64)

    def registrable(
        self, layer: str | None, batch_key: str | None, conditions: pd.DataFrame
    ) -> ad.AnnData:
        """A new AnnData of the source cells that a registration can be transferred to: their
        counts where setup read them, the batch and every registered condition (``conditions``,
        one known value per cell: the encoder reads only the counts and the batch, but the
        transfer needs a known category in every registered column)."""
        obs = conditions.copy()
        obs.index = self.names.astype(str)
        if batch_key is not None:
            obs[batch_key] = self.batch
        adata = ad.AnnData(X=self.counts, obs=obs)
        if layer is not None:
            adata.layers[layer] = self.counts
        return adata


KEPT_ADVICE = {
    "condition": "request a value for it in `conditions` to change it instead",
    "batch": "new batches are not supported: label every cell with one of the training batches",
}
"""What to do about a kept condition or batch that a source cell lacks or the model does not
know."""


def _known(
    values: pd.Series, categories: pd.Index, key: str, names: pd.Index, what: str
) -> pd.Categorical:
    """Source cells' values of ``key`` (a ``what``: condition or batch) as a categorical with
    the training categories; a ValueError that names the cells and the valid values unless
    every one is known."""
    labels = pd.Categorical(values.to_numpy(), categories=categories)
    unknown = pd.isna(labels)
    if unknown.any():
        shown = sorted({str(v) for v in values[unknown].unique()})[:5]
        raise ValueError(
            f"{int(unknown.sum())} source cell(s) (e.g. {list(names[unknown][:3])}) have {what} "
            f"{key!r} values the model does not know: {shown}. Known values: "
            f"{list(categories)}. Counterfactuals keep each cell's {what} {key!r}; "
            f"{KEPT_ADVICE[what]}."
        )
    return labels


def source_cells(
    source: ad.AnnData,
    var_names: pd.Index,
    layer: str | None,
    space: ConditionSpace,
    changed: Sequence[str],
    batch_key: str | None,
    batch_categories: pd.Index | None,
) -> SourceCells:
    """Check the source AnnData of a counterfactual and take what its cells keep.

    Parameters
    ----------
    source
        The user's AnnData, with cells (registered or not, a view or not; never changed).
    var_names
        The training genes, in order.
    layer
        The layer with counts at setup (None for ``X``).
    space
        The model's condition space.
    changed
        The conditions whose values are requested (changed); every other registered condition
        is kept from the source cells.
    batch_key, batch_categories
        The batch column and its training categories (None without one).
    """
    check_genes(var_names, source)
    if layer is not None and layer not in source.layers:
        raise ValueError(
            f"`source` has no layer {layer!r}, where the model was set up to read counts; "
            f"its layers: {list(source.layers)}."
        )
    names = pd.Index(source.obs_names)
    matrix = source.X if layer is None else source.layers[layer]
    where = "source.X" if layer is None else f"source.layers[{layer!r}]"
    validate_counts(ad.AnnData(X=matrix, obs=pd.DataFrame(index=names.astype(str))), where=where)
    counts = sparse.csr_matrix(matrix, dtype=np.float32)

    def column(key: str, what: str) -> pd.Series:
        if key not in source.obs:
            raise ValueError(
                f"`source` has no obs column {key!r}: counterfactuals keep each cell's {what} "
                f"{key!r}, so the source cells must carry it; {KEPT_ADVICE[what]}."
            )
        return source.obs[key]

    kept = pd.DataFrame(index=pd.RangeIndex(source.n_obs))
    for key in space.categories:
        if key not in changed:
            kept[key] = _known(
                column(key, "condition"), space.categories[key], key, names, "condition"
            )
    for key in space.values:
        if key not in changed:
            column(key, "condition")
            kept[key] = numeric_values(
                source.obs, key, "source.obs", "give every source cell its value, which it keeps"
            )
            warn_outside_range(key, kept[key].to_numpy(), space.values[key], what="Kept ")
    own = pd.DataFrame(index=pd.RangeIndex(source.n_obs))
    for key in changed:
        values = source.obs[key] if key in source.obs else pd.Series([None] * source.n_obs)
        if key in space.values:
            # NaN where the value is missing or not a number: no own target for that cell
            own[key] = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
        else:
            own[key] = pd.Categorical(values.to_numpy(), categories=space.categories_of(key))
    batch = None
    if batch_key is not None:
        batch = _known(column(batch_key, "batch"), batch_categories, batch_key, names, "batch")
    return SourceCells(names, counts, kept, own, batch)


def own_conditions(cells: SourceCells, assignment: pd.DataFrame) -> pd.DataFrame:
    """Each source cell's own conditions: the kept ones from ``assignment``, the changed ones
    from the source (missing where the model does not know the cell's value)."""
    own = assignment.copy()
    for key in cells.own.columns:
        if key in own.columns:
            own[key] = cells.own[key].values
    return own
