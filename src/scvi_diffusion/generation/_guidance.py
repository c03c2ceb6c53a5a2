"""Step 3 of planning: how each cell is guided toward its conditions.

Every requested or kept condition gets a guidance term (its target per cell and a scale).
Registered conditions guide through the denoiser (classifier-free guidance) or their trained
classifiers; unregistered obs columns always through a classifier, trained on demand. With
classifier-free guidance of several conditions, each cell also gets its kind of guidance: the
joint conditional model for a combination seen in training, an analogy with other groups for
an unseen combination that other groups show the change to, the conditions composed one by
one otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from .._validation import check_number
from ..conditions import ConditionSpace
from ._analogy import plan_analogy, plan_new_cell_analogy
from ._plan import GuidancePlan, GuidanceTerm
from ._trained import TrainedModel
from ._trajectories import Interpolation


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


def plan_guidance(
    trained: TrainedModel,
    assignment: pd.DataFrame,
    keys: list[str],
    interpolation: Interpolation | None,
    guidance_scale,
) -> GuidancePlan:
    """Every condition's guidance scale and term, and which cells the joint conditional model
    guides (:func:`joint_cells`); no analogy yet (see :func:`with_analogy`)."""
    space = trained.space
    weights = target_weights(assignment, keys, space, interpolation)
    scales = guidance_scales(
        guidance_scale, space, {k: trained.default_guidance_scale(k) for k in keys}
    )
    free = trained.denoiser_keys
    terms = [GuidanceTerm(k, weights[k], scales[k]) for k in keys]
    return GuidancePlan(
        scales=scales,
        denoiser_terms=sorted(
            (t for t in terms if t.key in free), key=lambda t: free.index(t.key)
        ),
        classifier_terms=[t for t in terms if t.key not in free],
        classifiers_to_train={
            k: space.extra[k]
            for k in keys
            if k not in free
            and k not in trained.condition_keys
            and k not in trained.trained_on_demand
        },
        joint_cells=joint_cells(trained, assignment, interpolation),
    )


def joint_cells(
    trained: TrainedModel, assignment: pd.DataFrame, interpolation: Interpolation | None = None
) -> np.ndarray | None:
    """Cells guided by the joint conditional model: those of a seen combination of the
    categorical conditions (:func:`seen_combinations`), and with continuous conditions
    beside other conditions every cell the categorical ones do not place elsewhere: a
    value's effect may differ between them, which the joint model knows."""
    joint = seen_combinations(trained, assignment, interpolation)
    if joint is None and trained.continuous_keys and len(trained.denoiser_keys) > 1:
        joint = np.ones(assignment.shape[0], dtype=bool)
    return joint


def seen_combinations(
    trained: TrainedModel, assignment: pd.DataFrame, interpolation: Interpolation | None = None
) -> np.ndarray | None:
    """Cells whose combination of the denoiser's conditions has at least
    :data:`~scvi_diffusion._constants.JOINT_GUIDANCE_MIN_CELLS` training cells (with
    interpolation, at both ends): the joint conditional model knows these combinations, and
    how their conditions interact; other cells compose the conditions one by one. None with
    fewer than two denoiser conditions, where both are the same."""
    combinations = trained.combinations
    if combinations is None:
        return None
    if interpolation is None or interpolation.key not in combinations.keys:
        return combinations.known(assignment)
    ends = [
        combinations.known(assignment.assign(**{interpolation.key: value}))
        for value in (interpolation.source, interpolation.target)
    ]
    return ends[0] & ends[1]


def with_new_cell_analogy(
    trained: TrainedModel, guidance: GuidancePlan, assignment: pd.DataFrame
) -> GuidancePlan:
    """New cells of combinations the denoiser never saw, guided by analogy from their nearest
    seen combination (:func:`~scvi_diffusion.generation._analogy.plan_new_cell_analogy`);
    unchanged without classifier-free guidance of two conditions or more."""
    combinations = trained.combinations
    if combinations is None:
        return guidance
    analogy = plan_new_cell_analogy(
        assignment[list(combinations.keys)], combinations, guidance.scales
    )
    return replace(guidance, analogy=analogy)


def with_counterfactual_analogy(
    trained: TrainedModel, guidance: GuidancePlan, own: pd.DataFrame, target: pd.DataFrame
) -> GuidancePlan:
    """Counterfactuals toward combinations the denoiser never saw, guided by analogy with the
    groups that show the change (:func:`~scvi_diffusion.generation._analogy.plan_analogy`);
    unchanged without classifier-free guidance of two conditions or more."""
    combinations = trained.combinations
    if combinations is None:
        return guidance
    analogy = plan_analogy(own, target, combinations, guidance.scales)
    return replace(guidance, analogy=analogy)


def inversion_terms(
    keys: Sequence[str], own: pd.DataFrame, space: ConditionSpace
) -> list[GuidanceTerm]:
    """Classifier-free guidance of a counterfactual's inversion, one term per denoiser
    condition (``keys``, in the denoiser's order): the plain conditional model (scale 1)
    under each source cell's own values (``own``); a cell whose own value the model does not
    know gets a zero row, which leaves that condition out for that cell only."""
    weights = target_weights(own[list(keys)], keys, space, None)
    return [GuidanceTerm(key, weights[key], 1.0) for key in keys]


def inversion_guidance(trained: TrainedModel, own: pd.DataFrame) -> GuidancePlan:
    """How a counterfactual's inversion is guided: :func:`inversion_terms` under the source
    cells' own conditions ``own``, joint for the cells of a seen combination; no term with
    classifier guidance, whose denoiser is unconditional."""
    keys = trained.denoiser_keys
    return GuidancePlan(
        scales={key: 1.0 for key in keys},
        denoiser_terms=inversion_terms(keys, own, trained.space),
        joint_cells=joint_cells(trained, own),
    )
