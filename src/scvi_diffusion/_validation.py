"""Checks on the user's data, run before anything is registered."""

from __future__ import annotations

import anndata as ad
import numpy as np
from scipy import sparse

_CHUNK = 10_000


def _values_of(matrix):
    """The stored values of a matrix chunk (non-zeros for sparse matrices)."""
    if sparse.issparse(matrix):
        return np.asarray(matrix.tocsr().data if not hasattr(matrix, "data") else matrix.data)
    return np.asarray(matrix)


def validate_counts(adata: ad.AnnData, layer: str | None = None) -> None:
    """Raise a ValueError unless the matrix holds finite, non-negative integer counts.

    Reads the matrix in chunks of cells, so backed AnnData are not loaded whole.

    Parameters
    ----------
    adata
        The user's AnnData (left unchanged).
    layer
        Layer with the counts; None for ``adata.X``.
    """
    if not isinstance(adata, ad.AnnData):
        raise TypeError(f"Expected an AnnData, got {type(adata).__name__}.")
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(
            f"The AnnData is empty ({adata.n_obs} cells x {adata.n_vars} genes); give at least "
            "one cell and one gene."
        )
    where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    if layer is not None and layer not in adata.layers:
        raise ValueError(f"Layer {layer!r} not found; available layers: {list(adata.layers)}.")
    matrix = adata.X if layer is None else adata.layers[layer]
    if matrix is None:
        raise ValueError(f"{where} is empty (None); store raw counts there.")
    for start in range(0, adata.n_obs, _CHUNK):
        chunk = matrix[start : start + _CHUNK]
        values = _values_of(chunk)
        if values.dtype.kind not in "biuf":
            raise ValueError(f"{where} must be numeric, got dtype {values.dtype}.")
        if values.dtype.kind == "f":
            if not np.all(np.isfinite(values)):
                raise ValueError(
                    f"{where} contains NaN or infinite values; the model needs raw counts."
                )
            if np.any(values != np.round(values)):
                raise ValueError(
                    f"{where} contains non-integer values; the negative binomial likelihood "
                    "needs raw counts (not normalised or log-transformed data). Put raw counts "
                    "in a layer and pass `layer=`."
                )
        if values.size and values.min() < 0:
            raise ValueError(f"{where} contains negative values; the model needs raw counts.")
