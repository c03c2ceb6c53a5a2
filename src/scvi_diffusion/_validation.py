"""Checks on the user's data and arguments, and chunked reads of backed matrices."""

from __future__ import annotations

from numbers import Integral

import anndata as ad
import numpy as np
from scipy import sparse

_CHUNK = 10_000


def _row_chunks(matrix):
    """The matrix ``_CHUNK`` rows at a time, so a backed matrix is never loaded whole."""
    for start in range(0, matrix.shape[0], _CHUNK):
        yield matrix[start : start + _CHUNK]


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
    for chunk in _row_chunks(matrix):
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


def row_sums(matrix) -> np.ndarray:
    """float64 row sums of a dense, sparse or backed (on-disk) matrix, read in chunks."""
    sums = [
        np.asarray(chunk.sum(axis=1), dtype=np.float64).ravel() for chunk in _row_chunks(matrix)
    ]
    return np.concatenate(sums) if sums else np.zeros(0)


def positive_int(name: str, value, allow_none: bool = True) -> int | None:
    """``value`` as an int; a TypeError unless it is an integer, a ValueError unless > 0."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"`{name}` must be a positive integer, got {value!r}.")
    if value <= 0:
        raise ValueError(f"`{name}` must be a positive integer, got {value}.")
    return int(value)
