"""Writing generated cells to an .h5ad file batch by batch, so they never all sit in memory."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
from anndata.io import sparse_dataset, write_elem
from scipy import sparse

STREAM_SUFFIXES = (".h5ad",)
# anndata's on-disk encoding of a dense array, written by hand for datasets filled in slices
_DENSE_ARRAY_ATTRS = {"encoding-type": "array", "encoding-version": "0.2.0"}


def validate_out(out) -> Path | None:
    """``out`` must be None or a path to a new or existing ``.h5ad`` file in an existing folder."""
    if out is None:
        return None
    if not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"`out` must be a file path or None, got {type(out).__name__}.")
    path = Path(out)
    if path.suffix not in STREAM_SUFFIXES:
        raise ValueError(f"`out` must end in one of {list(STREAM_SUFFIXES)}, got {str(path)!r}.")
    if not path.parent.is_dir():
        raise ValueError(f"The folder of `out` does not exist: {str(path.parent)!r}.")
    if path.is_dir():
        raise ValueError(f"`out` is a folder, not a file: {str(path)!r}.")
    return path


def _dense_dataset(group: h5py.Group, name: str, shape: tuple[int, int]) -> h5py.Dataset:
    rows = max(1, min(shape[0], 1024))
    dataset = group.create_dataset(name, shape=shape, dtype="float32", chunks=(rows, shape[1]))
    dataset.attrs.update(_DENSE_ARRAY_ATTRS)
    return dataset


def write_h5ad_in_batches(
    path: Path,
    skeleton: ad.AnnData,
    batches: Iterable[tuple[np.ndarray | None, np.ndarray | sparse.csr_matrix]],
    latent_key: str | None = None,
    n_latent: int = 0,
) -> ad.AnnData:
    """Write ``skeleton`` (obs, var, uns; no X) and then each batch's rows of X and latents.

    ``batches`` yields ``(latents, values)``; with ``latent_key=None`` the latents are None and
    only X is written.

    The file is written under a temporary name and renamed when complete, so an interrupted
    run never leaves a partial file at ``path``. Returns the AnnData backed by ``path``.
    """
    partial = path.with_name(f".{path.name}.partial")
    n_obs, n_vars = skeleton.shape
    try:
        skeleton.write_h5ad(partial)
        with h5py.File(partial, "a") as file:
            latents = None
            if latent_key is not None:
                latents = _dense_dataset(file["obsm"], latent_key, (n_obs, n_latent))
            start = 0
            for z, values in batches:
                stop = start + values.shape[0]
                if latents is not None:
                    latents[start:stop] = z
                if sparse.issparse(values):
                    if start == 0:
                        write_elem(file, "X", sparse.csr_matrix(values))
                    else:
                        sparse_dataset(file["X"]).append(sparse.csr_matrix(values))
                else:
                    if start == 0:
                        _dense_dataset(file, "X", (n_obs, n_vars))
                    file["X"][start:stop] = values
                start = stop
        os.replace(partial, path)
    finally:
        if partial.exists():
            partial.unlink()
    return ad.read_h5ad(path, backed="r")
