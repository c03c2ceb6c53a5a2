"""Trajectories: Gradient Interpolation between two categories, and sweeps of a value.

``generate(interpolate={key: (source, target)})`` asks for cells along the way from one state
to another. For a categorical condition that is Gradient Interpolation: training cells of the
source category, noised part way, denoised with guidance weight ``1 - w`` toward the source
and ``w`` toward the target. For a continuous condition the value itself is swept: new cells
from noise at evenly spaced values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..conditions import ConditionSpace
from ._reference_cells import draw_reference_cells


def in_equal_runs(grid: np.ndarray, n_cells: int) -> np.ndarray:
    """``n_cells`` values: the grid's points in order, each repeated over an equal run."""
    return grid[(np.arange(n_cells) * len(grid)) // n_cells]


@dataclass(frozen=True)
class Interpolation:
    """Gradient Interpolation of one condition from ``source`` to ``target``."""

    key: str
    source: object
    target: object
    grid: np.ndarray
    """The interpolation weights ``w``, from 0 (source) to 1 (target)."""
    start_time: int
    """Timestep the source cells are noised to."""

    def weights(self, n_cells: int) -> np.ndarray:
        """The weight of each of ``n_cells`` cells: the grid's points in equal runs."""
        return in_equal_runs(self.grid, n_cells)

    def params(self) -> dict:
        """The interpolation as recorded in ``uns``."""
        return {
            "condition": self.key,
            "source": str(self.source),
            "target": str(self.target),
            "n_points": len(self.grid),
            "start_time": int(self.start_time),
        }


@dataclass(frozen=True)
class ValueSweep:
    """A continuous condition swept from ``source`` to ``target``: new cells at evenly spaced
    values, each generated from noise at its own value (no Gradient Interpolation needed)."""

    key: str
    source: float
    target: float
    grid: np.ndarray
    """The sweep's weights ``w``, from 0 (source) to 1 (target)."""

    def weights(self, n_cells: int) -> np.ndarray:
        """The weight of each of ``n_cells`` cells: the grid's points in equal runs."""
        return in_equal_runs(self.grid, n_cells)

    def values(self, n_cells: int) -> np.ndarray:
        """The value of each cell: ``source + w * (target - source)``."""
        return self.source + self.weights(n_cells) * (self.target - self.source)

    def params(self) -> dict:
        """The sweep as recorded in ``uns``."""
        return {
            "condition": self.key,
            "source": float(self.source),
            "target": float(self.target),
            "n_points": len(self.grid),
            "kind": "values",
        }


def parse_interpolation(
    interpolate, space: ConditionSpace, requested: pd.DataFrame, n_points: int, start_time: int
) -> Interpolation | ValueSweep | None:
    """The ``interpolate`` argument of ``generate``, checked against the registered conditions:
    Gradient Interpolation of a categorical condition, or a sweep of a continuous one."""
    if interpolate is None:
        return None
    if not isinstance(interpolate, Mapping) or len(interpolate) != 1:
        raise ValueError(
            "`interpolate` must be a dict with one condition, e.g. "
            "{'cell_type': ('CD34+', 'CD14+ Monocyte')}."
        )
    ((name, pair),) = interpolate.items()
    key = space.resolve_key(name)
    if key not in space.categories and key not in space.values:
        raise ValueError(
            f"Interpolation needs a registered condition; {key!r} is not one. Registered: "
            f"{list(space.categories) + list(space.values)}."
        )
    if isinstance(pair, str) or not isinstance(pair, Sequence) or len(pair) != 2:
        raise ValueError(f"`interpolate[{name!r}]` must be a (source, target) pair, got {pair!r}.")
    if key in requested.columns:
        raise ValueError(f"{key!r} is both interpolated and fixed in `conditions`; give it once.")
    if key in space.values:
        source, target = space.validate_values(key, list(pair))
        return ValueSweep(key, float(source), float(target), np.linspace(0.0, 1.0, n_points))
    source, target = (space.validate_values(key, [v])[0] for v in pair)
    return Interpolation(key, source, target, np.linspace(0.0, 1.0, n_points), start_time)


def draw_interpolation_cells(
    interpolation: Interpolation,
    requested: pd.DataFrame,
    training: pd.DataFrame,
    space: ConditionSpace,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Source cells to start from, and reference cells: the source cell's at weight ``w``
    below a uniform draw, otherwise a target cell's (so library sizes move with ``w``)."""
    n_cells = requested.shape[0]
    categories = space.categories_of(interpolation.key)
    start_idx, target_idx = (
        draw_reference_cells(
            requested.assign(
                **{interpolation.key: pd.Categorical([end] * n_cells, categories=categories)}
            ),
            training,
            rng,
        )
        for end in (interpolation.source, interpolation.target)
    )
    ref_idx = np.where(rng.random(n_cells) < interpolation.weights(n_cells), target_idx, start_idx)
    return ref_idx, start_idx
