"""Planning new cells: by condition, in the training composition, along a trajectory or a sweep.

Each cell gets its requested conditions, a reference training cell with those conditions (its
library size and batch, and the conditions it was not asked for), its guidance and its start:
noise, or for Gradient Interpolation a training cell of the source category noised to the
start time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .._constants import INTERPOLATION_WEIGHT_KEY
from ..conditions import ConditionSpace
from ._guidance import plan_guidance, with_new_cell_analogy
from ._obs import generation_token, output_obs, synthetic_names
from ._plan import GenerationPlan
from ._reference_cells import draw_reference_cells, matched_on_nearest_values, training_conditions
from ._request import GenerationRequest
from ._requested import parse_requests
from ._trained import TrainedModel
from ._trajectories import ValueSweep, draw_interpolation_cells, parse_interpolation


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


def _sweep_without_start_time(sweep: ValueSweep, start_time_given: bool) -> None:
    """A sweep of a continuous value starts every cell from noise: a start time is an error."""
    if start_time_given:
        raise ValueError(
            "`start_time` does not apply to a sweep of the continuous condition "
            f"{sweep.key!r}: its cells are generated "
            "from noise at each value. Leave `start_time` out (it sets where Gradient "
            "Interpolation of a categorical condition starts)."
        )


def plan_new_cells(request: GenerationRequest, trained: TrainedModel) -> GenerationPlan:
    """The new cells of ``request``: their conditions, reference cells, guidance and start."""
    space = trained.space
    requested = parse_requests(space, request.n, request.keywords, request.conditions)
    interpolation = parse_interpolation(
        request.interpolate, space, requested, request.n_points, request.start_time
    )
    sweep = None
    if isinstance(interpolation, ValueSweep):
        # a continuous sweep is new cells, each at its own value
        _sweep_without_start_time(interpolation, request.start_time_given)
        sweep, interpolation = interpolation, None
        requested = requested.assign(**{sweep.key: sweep.values(requested.shape[0])})
    rng = np.random.default_rng(request.settings.seed)
    registered = trained.registered
    keys = [*registered, *(k for k in requested.columns if k not in registered)]
    training = training_conditions(
        trained.reference, registered, trained.training_obs, space.extra, keys
    )
    matched, matched_training = matched_on_nearest_values(
        requested, training, trained.continuous_keys, space.values
    )
    start_latents = None
    if interpolation is None:
        ref_idx = draw_reference_cells(
            matched, matched_training, rng, unseen_hint=trained.unseen_hint()
        )
    else:
        ref_idx, start_idx = draw_interpolation_cells(
            interpolation, matched, matched_training, space, rng
        )
        unique, inverse = np.unique(start_idx, return_inverse=True)
        start_latents = trained.cells.latents(unique)[inverse]
    assignment = complete_assignment(requested, training, ref_idx, keys, space)
    guidance = plan_guidance(trained, assignment, keys, interpolation, request.guidance_scale)
    if interpolation is None:
        guidance = with_new_cell_analogy(trained, guidance, assignment)
    obs = output_obs(
        assignment,
        trained.batches_of(ref_idx),
        trained.batch_key,
        interpolation,
        space,
        synthetic_names(len(ref_idx), generation_token()),
    )
    if sweep is not None:
        obs[INTERPOLATION_WEIGHT_KEY] = sweep.weights(obs.shape[0]).astype(np.float64)
    return GenerationPlan(
        settings=request.settings,
        obs=obs,
        library=trained.reference["_library"].to_numpy()[ref_idx],
        batch_index=trained.reference["_batch"].to_numpy()[ref_idx],
        guidance=guidance,
        start_time=None if interpolation is None else interpolation.start_time,
        start_latents=start_latents,
        trajectory=sweep or interpolation,
    )
