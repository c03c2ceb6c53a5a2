"""Fidelity metrics comparing real and synthetic cells."""

from ._basic import conditional_accuracy, mean_expression_correlation, shared_space

__all__ = ["conditional_accuracy", "mean_expression_correlation", "shared_space"]
