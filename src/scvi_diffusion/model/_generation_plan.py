"""What a call of ``generate`` will do, decided before any sampling: the generation plan.

:meth:`~scvi_diffusion.ScDiffusion.generate` checks its inputs, builds a
:class:`GenerationPlan` (which reference cell each generated cell takes its library size and
batch from, its conditions, the guidance targets and scales, start latents and timesteps), and
then runs the plan batch by batch (``_pipeline.py``). The functions here are the parts of the
plan that need no model.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral

import numpy as np
import pandas as pd
import torch
from scipy import sparse

from .._constants import (
    DEFAULT_SAMPLER,
    DEFAULT_STEPS,
    INTERPOLATION_WEIGHT_KEY,
    OUTPUTS,
)
from .._validation import check_number, check_seed, one_of, positive_int
from ..diffusion import SAMPLERS
from ._analogy import Analogy
from ._conditions import ConditionSpace, draw_reference_cells


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


@dataclass
class GuidanceTerm:
    """One condition's guidance: its target weights (one row per cell; for a continuous
    condition, each cell's standardised value) and scale."""

    key: str
    weights: np.ndarray
    scale: float


@dataclass(frozen=True)
class SamplingSettings:
    """How the plan's cells are sampled and returned, checked."""

    sampler: str
    n_steps: int
    output: str
    batch_size: int
    seed: int | None


def check_sampling_arguments(
    sampler, n_steps, output, batch_size, seed, autoencoder: str, n_timesteps: int
) -> SamplingSettings:
    """``generate``'s sampler, steps, output, batch size and seed, with their defaults."""
    if sampler is None:
        sampler = DEFAULT_SAMPLER[autoencoder]
    sampler = one_of("sampler", sampler, SAMPLERS)
    if n_steps is None:
        n_steps = DEFAULT_STEPS.get(sampler, n_timesteps)
    output = one_of("output", output, OUTPUTS)
    n_steps = positive_int("n_steps", n_steps, allow_none=False)
    if n_steps > n_timesteps:
        raise ValueError(f"`n_steps` must be at most T={n_timesteps}, got {n_steps}.")
    batch_size = positive_int("batch_size", batch_size, allow_none=False)
    return SamplingSettings(sampler, n_steps, output, batch_size, check_seed(seed))


@dataclass
class GenerationPlan:
    """Everything one ``generate`` call runs, one row of ``obs`` per generated cell.

    ``denoiser_terms`` guide through a classifier-free denoiser; ``classifier_terms`` through
    guidance classifiers, of which ``classifiers_to_train`` (unregistered obs columns) must be
    trained on demand before sampling.
    """

    settings: SamplingSettings
    obs: pd.DataFrame
    """The generated cells' conditions (and batch, and interpolation weights)."""
    params: dict
    """What ``uns['scdiffusion']`` records of the generation."""
    timesteps: list[int]
    library: np.ndarray
    """Library size of each cell, from its reference cell (counterfactuals: its source
    cell)."""
    batch_index: np.ndarray
    """Batch code of each cell, from its reference cell (counterfactuals: its source cell)."""
    denoiser_terms: list[GuidanceTerm]
    classifier_terms: list[GuidanceTerm]
    classifiers_to_train: dict[str, pd.Index] = field(default_factory=dict)
    start_latents: torch.Tensor | None = None
    """Standardised latents of the real cells that interpolation or counterfactuals start
    from."""
    source_counts: sparse.csr_matrix | None = None
    """Counterfactuals: the source cells' counts, which the output counts are coupled to
    (see :func:`~scvi_diffusion.module._count_sampling.coupled_counts`); None draws counts
    afresh from the decoder."""
    inversion_terms: list[GuidanceTerm] | None = None
    """How start latents reach the first timestep: None noises them (interpolation); a list
    inverts them with DDIM under these guidance terms, the source cells' own conditions
    (counterfactuals)."""
    joint_cells: np.ndarray | None = None
    """Cells whose classifier-free guidance is joint, not compositional (see
    :class:`~scvi_diffusion.diffusion.ClassifierFreeGuidance`): those whose combination of
    conditions the denoiser was trained on; None: none of them."""
    inversion_joint_cells: np.ndarray | None = None
    """The same for the inversion, under the source cells' own conditions."""
    analogy: Analogy | None = None
    """Counterfactuals toward combinations never seen in training: the cells guided by
    analogy with other groups (see :mod:`~scvi_diffusion.model._analogy`), which take
    precedence over ``joint_cells``."""

    @property
    def n_cells(self) -> int:
        """Number of cells to generate."""
        return self.obs.shape[0]


def check_interpolation_arguments(n_points, start_time, n_timesteps: int) -> tuple[int, int]:
    """Valid ``n_points`` (at least 2) and ``start_time`` (in ``[1, T - 1]``)."""
    n_points = positive_int("n_points", n_points, allow_none=False)
    if n_points < 2:
        raise ValueError(f"`n_points` must be at least 2, got {n_points}.")
    return n_points, check_start_time(start_time, n_timesteps)


def check_start_time(start_time, n_timesteps: int) -> int:
    """A valid ``start_time``: an integer in ``[1, T - 1]``."""
    if isinstance(start_time, bool) or not isinstance(start_time, Integral):
        raise TypeError(f"`start_time` must be an integer, got {start_time!r}.")
    if not 0 < start_time < n_timesteps:
        raise ValueError(f"`start_time` must be in [1, {n_timesteps - 1}], got {start_time}.")
    return int(start_time)


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
        # past validate_values, this function, the plan, generate() and its decorator
        source, target = space.validate_values(key, list(pair), stacklevel=6)
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
            # past this function, the plan, generate() and its inference_mode decorator
            stacklevel=6,
        )
        for end in (interpolation.source, interpolation.target)
    )
    ref_idx = np.where(rng.random(n_cells) < interpolation.weights(n_cells), target_idx, start_idx)
    return ref_idx, start_idx


def complete_assignment(
    requested: pd.DataFrame,
    training: pd.DataFrame,
    reference_cells: np.ndarray,
    keys: Sequence[str],
    space: ConditionSpace,
) -> pd.DataFrame:
    """Every condition of every cell: the requested values, the rest from its reference cell."""
    assignment = pd.DataFrame(index=pd.RangeIndex(requested.shape[0]))
    for key in keys:
        if key in requested.columns:
            assignment[key] = requested[key].to_numpy()
        else:
            assignment[key] = training[key].to_numpy()[reference_cells]
        if key not in space.values:
            assignment[key] = pd.Categorical(assignment[key], categories=space.categories_of(key))
    return assignment


def target_weights(
    assignment: pd.DataFrame,
    keys: Sequence[str],
    space: ConditionSpace,
    interpolation: Interpolation | None,
) -> dict[str, np.ndarray]:
    """One ``(n_cells, n_categories)`` matrix per condition: one-hot on the cell's value (a
    zero row for a missing one: no target for that cell), or ``(1 - w, w)`` on source and
    target for the interpolated condition; for a continuous condition, each cell's
    standardised value."""
    weights = {}
    for key in keys:
        if key in space.values:
            weights[key] = space.values[key].standardize(assignment[key].to_numpy(float))
            continue
        categories = space.categories_of(key)
        codes = assignment[key].cat.codes.to_numpy()
        matrix = np.zeros((len(codes), len(categories)), dtype=np.float32)
        if interpolation is not None and key == interpolation.key:
            w = interpolation.weights(len(codes))
            matrix[:, categories.get_loc(interpolation.source)] = 1.0 - w
            matrix[:, categories.get_loc(interpolation.target)] += w
        else:
            known = np.flatnonzero(codes >= 0)
            matrix[known, codes[known]] = 1.0
        weights[key] = matrix
    return weights


def guidance_scales(
    guidance_scale, space: ConditionSpace, defaults: dict[str, float]
) -> dict[str, float]:
    """The scale of every guided condition: ``defaults``, overridden by ``guidance_scale`` (one
    number for all, or a dict per condition)."""

    def check(name: str, value) -> float:
        return check_number(
            name, value, 0.0, math.inf, low_open=False, expected="a non-negative finite number"
        )

    if guidance_scale is None:
        return dict(defaults)
    if isinstance(guidance_scale, Mapping):
        scales = dict(defaults)
        for name, value in guidance_scale.items():
            scales[space.resolve_key(name)] = check(f"guidance_scale[{name!r}]", value)
        return scales
    return {k: check("guidance_scale", guidance_scale) for k in defaults}


def generation_token() -> str:
    """A short random token, new for every ``generate`` call, that its cells' names carry.

    Drawn from the operating system, not from the seeded generator: two calls with the same
    seed give the same cells under different names, so ``anndata.concat`` keeps them apart.
    """
    return secrets.token_hex(4)


def synthetic_names(n_cells: int, token: str) -> pd.Index:
    """New cells' names: ``synthetic-{token}-{i}``, ``i`` counting from 0 in output order."""
    return pd.Index([f"synthetic-{token}-{i}" for i in range(n_cells)])


def counterfactual_names(source_names: Sequence[str], token: str) -> pd.Index:
    """Counterfactuals' names: ``{source cell}-cf-{token}``, or with the cell's position added
    (``{source cell}-cf-{token}-{i}``) when the source names repeat, so they stay unique."""
    source_names = pd.Index(source_names).astype(str)
    if source_names.is_unique:
        return pd.Index([f"{name}-cf-{token}" for name in source_names])
    return pd.Index([f"{name}-cf-{token}-{i}" for i, name in enumerate(source_names)])


def output_obs(
    assignment: pd.DataFrame,
    batches: pd.Categorical | None,
    batch_key: str | None,
    interpolation: Interpolation | None,
    space: ConditionSpace,
    names: pd.Index,
) -> pd.DataFrame:
    """The generated cells' ``obs``, indexed by ``names``: their conditions and batch, and for
    interpolation the weight, source and target instead of the interpolated condition."""
    obs = assignment.copy()
    if batch_key is not None:
        obs[batch_key] = batches
    if interpolation is not None:
        n_cells = obs.shape[0]
        obs[interpolation.key] = pd.Categorical(
            [None] * n_cells, categories=space.categories_of(interpolation.key)
        )
        obs[INTERPOLATION_WEIGHT_KEY] = interpolation.weights(n_cells).astype(np.float64)
        obs["interpolation_source"] = pd.Categorical([interpolation.source] * n_cells)
        obs["interpolation_target"] = pd.Categorical([interpolation.target] * n_cells)
    # categories without generated cells trip scanpy (rank_genes_groups needs cells in
    # every group); anndata.concat unions the categories with the real cells' anyway
    for column in obs.select_dtypes("category"):
        obs[column] = obs[column].cat.remove_unused_categories()
    obs.index = pd.Index(names)
    return obs
