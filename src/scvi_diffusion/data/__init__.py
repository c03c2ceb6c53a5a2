"""Bundled datasets (no network access)."""

from ._bootstrap import pbmc68k_bootstrap
from ._pbmc import pbmc68k
from ._two_factor import pbmc68k_two_factor

__all__ = ["pbmc68k", "pbmc68k_bootstrap", "pbmc68k_two_factor"]
