"""Plots of real and synthetic cells."""

from ._genes import gene_moments
from ._summary import metrics_summary
from ._umap import umap_real_vs_synthetic

__all__ = ["gene_moments", "metrics_summary", "umap_real_vs_synthetic"]
