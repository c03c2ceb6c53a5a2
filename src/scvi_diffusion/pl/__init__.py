"""Plots of real and synthetic cells."""

from ._umap import umap_real_vs_synthetic

__all__ = ["umap_real_vs_synthetic"]
