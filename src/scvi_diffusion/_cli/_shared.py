"""What several commands share: the ``--seed`` option, and reading an ``.h5ad`` file with an
error that names the file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import anndata as ad


def add_seed(parser: argparse.ArgumentParser) -> None:
    """Add the ``--seed`` option to a command's parser."""
    parser.add_argument("--seed", type=int, default=0, help="Random seed (default: %(default)s).")


def read_anndata(path: str, backed: bool = False) -> ad.AnnData:
    """The AnnData in ``path``; a ValueError that names the file if it cannot be read."""
    import anndata as ad

    if not Path(path).is_file():
        raise FileNotFoundError(f"No file at {path!r}.")
    try:
        adata = ad.read_h5ad(path, backed="r" if backed else None)
        if backed:
            # a backed file is read on demand: read its last cell now, so a truncated file
            # fails here and not in the middle of training
            adata.X[adata.n_obs - 1 :]
    except Exception as error:
        # h5py, anndata and the operating system each have their own errors for unreadable,
        # truncated and wrong-format files: one line that names the file instead
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(
            f"Cannot read {path!r} as an AnnData .h5ad file ({reason}). Give an .h5ad file "
            "written by anndata (`adata.write_h5ad(path)`)."
        ) from None
    return adata
