"""Bundled datasets (no network access)."""

from ._pbmc import pbmc68k

__all__ = ["pbmc68k"]
