"""Checks on the user's data and arguments, and chunked reads of backed matrices."""

from __future__ import annotations

from numbers import Integral, Real

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

_CHUNK = 10_000
MIN_GENES = 2


def _row_chunks(matrix):
    """The matrix ``_CHUNK`` rows at a time, so a backed matrix is never loaded whole."""
    for start in range(0, matrix.shape[0], _CHUNK):
        yield matrix[start : start + _CHUNK]


def _values_of(matrix):
    """The stored values of a matrix chunk (non-zeros for sparse matrices)."""
    if sparse.issparse(matrix):
        return np.asarray(matrix.tocsr().data if not hasattr(matrix, "data") else matrix.data)
    return np.asarray(matrix)


def validate_counts(adata: ad.AnnData, layer: str | None = None, where: str | None = None) -> None:
    """Raise a ValueError unless the matrix holds finite, non-negative integer counts.

    Reads the matrix in chunks of cells, so backed AnnData are not loaded whole.

    Parameters
    ----------
    adata
        The user's AnnData (left unchanged).
    layer
        Layer with the counts; None for ``adata.X``.
    where
        How the messages name the matrix (default ``adata.X`` or ``adata.layers[...]``); given,
        the matrix is one the user did not register, such as ``generate``'s source cells, so
        the messages do not suggest setup's ``layer=``.
    """
    if not isinstance(adata, ad.AnnData):
        raise TypeError(f"Expected an AnnData, got {type(adata).__name__}.")
    if adata.is_view:
        raise ValueError(
            "The AnnData is a view of another one (a subset such as `adata[mask]`); "
            "registration adds columns to it, so pass an actual AnnData: "
            "`adata = adata[mask].copy()`."
        )
    if adata.n_obs == 0 or adata.n_vars < MIN_GENES:
        raise ValueError(
            f"The AnnData has {adata.n_obs} cells x {adata.n_vars} genes; give at least one "
            f"cell and {MIN_GENES} genes (the decoder models how counts spread over genes, so a "
            "single gene leaves it nothing to learn)."
        )
    hint = ""
    if where is None:
        where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
        hint = " Put raw counts in a layer and pass `layer=`."
    if layer is not None and layer not in adata.layers:
        raise ValueError(f"Layer {layer!r} not found; available layers: {list(adata.layers)}.")
    matrix = adata.X if layer is None else adata.layers[layer]
    if matrix is None:
        raise ValueError(f"{where} is empty (None); store raw counts there.")
    empty_cells = []
    for start, chunk in zip(range(0, matrix.shape[0], _CHUNK), _row_chunks(matrix), strict=True):
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
                    f"{where} contains non-integer values; ScDiffusion needs raw counts (not "
                    "normalised or log-transformed data): its autoencoder's likelihood, "
                    "Poisson by default (or the negative binomial), is a distribution over "
                    "integer counts." + hint
                )
        if values.size and values.min() < 0:
            raise ValueError(f"{where} contains negative values; the model needs raw counts.")
        totals = np.asarray(chunk.sum(axis=1)).ravel()
        empty_cells.extend(start + np.flatnonzero(totals == 0))
    if empty_cells:
        examples = list(adata.obs_names[empty_cells[:3]])
        raise ValueError(
            f"{len(empty_cells)} cells have no counts in {where} (e.g. {examples}); the "
            "autoencoder cannot learn from a cell of library size 0. Remove them first, for "
            "example with `sc.pp.filter_cells(adata, min_counts=1)`."
        )


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


def one_of(name: str, value, choices) -> str:
    """``value`` if it is one of the string ``choices``; a TypeError or ValueError naming them."""
    if not isinstance(value, str):
        raise TypeError(f"`{name}` must be one of {list(choices)}, got {value!r}.")
    if value not in choices:
        raise ValueError(f"Unknown {name} {value!r}; choose one of {list(choices)}.")
    return value


def check_bool(name: str, value) -> bool:
    """``value`` if it is a bool (NumPy's too); a TypeError otherwise."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be True or False, got {value!r}.")
    return bool(value)


def check_seed(value) -> int | None:
    """A random seed: None or a non-negative integer."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"`seed` must be a non-negative integer or None, got {value!r}.")
    if value < 0:
        raise ValueError(f"`seed` must be a non-negative integer or None, got {value}.")
    return int(value)


def check_number(
    name: str,
    value,
    low: float,
    high: float,
    low_open: bool = True,
    high_open: bool = True,
    expected: str | None = None,
) -> float:
    """``value`` as a float; a TypeError unless it is a real number, a ValueError unless it lies
    between ``low`` and ``high`` (open or closed ends). ``expected`` words the valid values in
    both messages (default: the interval)."""
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(
            f"`{name}` must be {expected or f'a number in {interval}'}, got {value!r}."
        )
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (above and below):
        raise ValueError(f"`{name}` must be {expected or f'in {interval}'}, got {value!r}.")
    return float(value)


def check_key(name: str, value) -> str | None:
    """An obs column or layer name: a string or None."""
    if value is not None and not isinstance(value, str):
        raise TypeError(f"`{name}` must be a column name (a string) or None, got {value!r}.")
    return value


def check_genes(var_names: np.ndarray, adata: ad.AnnData) -> None:
    """Raise a ValueError that names the missing and unexpected genes unless ``adata`` has
    exactly ``var_names``, in that order."""
    given = np.asarray(adata.var_names.astype(str))
    saved = np.asarray(var_names).astype(str)
    if np.array_equal(saved, given):
        return
    saved = pd.Index(saved)
    missing = saved.difference(given)
    extra = pd.Index(given).difference(saved)
    raise ValueError(
        f"The AnnData's genes differ from the {len(saved)} genes the model was "
        f"trained on ({len(missing)} missing, e.g. {list(missing[:5])}; {len(extra)} "
        f"unexpected, e.g. {list(extra[:5])}; or a different order). Subset and order "
        "it as `adata[:, model_var_names]`."
    )
