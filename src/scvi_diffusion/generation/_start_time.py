"""Counterfactuals without a start time: the lowest that reaches the requested conditions.

A low start time keeps more of each source cell, a high one gives a large change room. On at
most :data:`~scvi_diffusion._constants.START_TIME_PROBE_CELLS` of the planned cells, the model
generates new cells of each cell's requested conditions and of its own ones (with the same
guidance: the model's own idea of the change) and counterfactuals at each start time of
:data:`~scvi_diffusion._constants.COUNTERFACTUAL_START_TIMES` in turn, and keeps the first
whose mean latent moved far enough along that change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from .._constants import COUNTERFACTUAL_START_TIMES, START_TIME_PROBE_CELLS, START_TIME_REACHED
from ._plan import GenerationPlan
from ._sampling import sampled_latents
from ._trained import TrainedModel


def probe_rows(n_cells: int, n_probe: int, seed: int) -> np.ndarray | None:
    """At most ``n_probe`` of ``n_cells`` source cells, drawn without replacement with
    ``seed``, in order; None when there are no more than that (all of them)."""
    if n_cells <= n_probe:
        return None
    return np.sort(np.random.default_rng(seed).choice(n_cells, n_probe, replace=False))


def latent_progress(
    source: np.ndarray, moved: np.ndarray, target: np.ndarray, start: np.ndarray | None = None
) -> float:
    """How far ``moved`` cells went from ``source`` along the change from ``start`` to
    ``target`` (by default from ``source``), between mean latents: the projection of the mean
    shift of ``moved`` on that change, as a share of it (0: not moved, 1: as far)."""
    origin = source.mean(axis=0)
    direction = target.mean(axis=0) - (origin if start is None else start.mean(axis=0))
    length = float(direction @ direction)
    if length == 0.0:
        return 1.0
    return float((moved.mean(axis=0) - origin) @ direction) / length


def own_plan(plan: GenerationPlan) -> GenerationPlan | None:
    """New cells of each counterfactual's own conditions, guided as ``plan`` guides its
    targets (the inversion's terms at the target terms' scales, joint where the own
    combination was seen); None with classifier guidance, whose inversion takes no
    condition."""
    if not plan.inversion.denoiser_terms:
        return None
    scales = {term.key: term.scale for term in plan.guidance.denoiser_terms}
    terms = [replace(t, scale=scales[t.key]) for t in plan.inversion.denoiser_terms]
    guidance = replace(plan.inversion, denoiser_terms=terms, classifier_terms=[])
    return replace(plan, guidance=guidance)


def _new_cells_of(plan: GenerationPlan) -> GenerationPlan:
    """The plan's cells from noise, with the same guidance."""
    return replace(plan, start_time=None, start_latents=None, inversion=None)


def reaching_start_time(
    trained: TrainedModel, plan: GenerationPlan, classifiers: Sequence[nn.Module]
) -> GenerationPlan:
    """``plan`` at the lowest start time of :data:`COUNTERFACTUAL_START_TIMES` at which its
    counterfactuals reach the requested conditions by the model's own account.

    The counterfactuals' mean latent must move from the source cells' at least
    :data:`START_TIME_REACHED` as far along the change as new cells of the requested
    conditions differ from new cells of the source cells' own ones (:func:`latent_progress`);
    if no start time does, the one that goes furthest. With classifier guidance (whose
    denoiser knows no condition) the change is measured from the source cells' mean latent to
    the new target cells'. Deterministic under the plan's seed (seed 0 without one). The
    search is recorded in the plan's counterfactual record.
    """
    seed = 0 if plan.settings.seed is None else plan.settings.seed
    probe = replace(plan, settings=replace(plan.settings, output="normalized", seed=seed))
    rows = probe_rows(plan.n_cells, START_TIME_PROBE_CELLS, seed)
    if rows is not None:
        probe = probe.rows(rows)
    with torch.no_grad():
        origin = trained.module.diffusion.unstandardize(probe.start_latents).cpu().numpy()
    target = sampled_latents(trained, _new_cells_of(probe), classifiers)
    own = own_plan(probe)
    start = origin if own is None else sampled_latents(trained, _new_cells_of(own), classifiers)
    progress = {}
    for start_time in COUNTERFACTUAL_START_TIMES:
        moved = sampled_latents(trained, replace(probe, start_time=start_time), classifiers)
        progress[start_time] = latent_progress(origin, moved, target, start)
        if progress[start_time] >= START_TIME_REACHED:
            chosen = start_time
            break
    else:
        chosen = max(progress, key=progress.get)
    change = "the source cells'" if own is None else "new cells of their own conditions"
    search = {
        "rule": (
            f"the lowest start time at which the counterfactuals' mean latent moves at least "
            f"{START_TIME_REACHED:g} as far as new cells of the requested conditions differ "
            f"from {change} ({probe.n_cells} source cells)"
        ),
        "progress": {str(k): round(float(v), 4) for k, v in progress.items()},
    }
    record = replace(plan.counterfactual, start_time_search=search)
    return replace(plan, start_time=chosen, counterfactual=record)
