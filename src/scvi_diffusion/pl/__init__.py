"""Plots of real and synthetic cells."""

from ._counts import count_moments
from ._genes import gene_moments
from ._summary import metrics_summary
from ._umap import umap_real_vs_synthetic
from ._values import value_progress

__all__ = [
    "count_moments",
    "gene_moments",
    "metrics_summary",
    "umap_real_vs_synthetic",
    "value_progress",
]
