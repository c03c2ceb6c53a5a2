"""Datasets: the bundled PBMCs (no network access) and PBMC3K (a local file or a download)."""

from ._bootstrap import pbmc68k_bootstrap
from ._pbmc import pbmc68k
from ._pbmc3k import pbmc3k
from ._two_factor import pbmc68k_two_factor

__all__ = ["pbmc3k", "pbmc68k", "pbmc68k_bootstrap", "pbmc68k_two_factor"]
