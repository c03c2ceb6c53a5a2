"""Registering conditions: ``setup_anndata``'s condition columns, checked and in order."""

from __future__ import annotations

from collections.abc import Sequence

from .._validation import check_key


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
