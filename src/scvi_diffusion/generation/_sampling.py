"""The denoising loop: the plan's cells, batch by batch, from their start to clean latents.

Each batch starts from noise, from its start latents noised to the start time (Gradient
Interpolation) or inverted to it with DDIM under the cells' own conditions
(counterfactuals); the sampler then denoises it with the plan's guidance: classifier-free
(joint, by analogy or compositional, each on its own cells) and classifier gradients.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .._seeding import seeded
from ..diffusion import (
    AnalogyGuidance,
    ClassifierFreeGuidance,
    ClassifierGuidance,
    ddim_invert,
    run_sampler,
)
from ._analogy import Analogy
from ._plan import GenerationPlan, GuidancePlan, GuidanceTerm
from ._trained import TrainedModel

COMPOSITIONAL, JOINT, ANALOGY = 0, 1, 2
"""The kinds of classifier-free guidance a cell can get."""


def _denoiser_epsilon(denoiser, guidance: GuidancePlan, rows: slice, device):
    """The denoiser's noise prediction, guided classifier-free by ``guidance``'s denoiser
    terms if any: by analogy for the analogy's cells, joint for the other joint cells,
    compositional for the rest. A batch that mixes them runs each guidance on its own cells
    only."""
    terms, analogy = guidance.denoiser_terms, guidance.analogy
    if not terms:
        return denoiser
    n_cells = rows.stop - rows.start
    modes = np.full(n_cells, COMPOSITIONAL, dtype=np.int64)
    if guidance.joint_cells is not None:
        modes[guidance.joint_cells[rows]] = JOINT
    if analogy is not None:
        modes[analogy.cells[rows]] = ANALOGY
    present = np.unique(modes)
    if len(present) == 1:
        return _guide(denoiser, int(present[0]), terms, analogy, rows, device)
    cells_of = [np.flatnonzero(modes == mode) for mode in present]
    guides = [
        (
            torch.as_tensor(cells, device=device),
            _guide(denoiser, int(mode), terms, analogy, rows.start + cells, device),
        )
        for mode, cells in zip(present, cells_of, strict=True)
    ]

    def mixed(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        eps = torch.empty_like(x)
        for cells, guide in guides:
            eps[cells] = guide(x[cells], t[cells])
        return eps

    return mixed


def _analogy_guide(denoiser, terms: list[GuidanceTerm], analogy: Analogy, index, device):
    """Guidance by analogy of the cells at ``index``; continuous conditions' values go into
    every pass."""
    base, target, source = (
        torch.as_tensor(values, device=device)
        for values in (analogy.base[index], analogy.target[:, index], analogy.source[:, index])
    )
    values = [term.weights[index] for term in terms if term.weights.ndim == 1]
    if values:
        # continuous conditions: each cell's values in every pass of the analogy
        values = torch.as_tensor(np.stack(values, axis=1), device=device)
        base = torch.cat([base.float(), values], dim=1)
        target, source = (
            torch.cat([labels.float(), values.expand(labels.shape[0], -1, -1)], dim=2)
            for labels in (target, source)
        )
    coefficients = torch.as_tensor(analogy.coefficients[:, index], device=device)
    return AnalogyGuidance(denoiser, base, target, source, coefficients)


def _guide(denoiser, mode: int, terms: list[GuidanceTerm], analogy, index, device):
    """One kind of classifier-free guidance of the cells at ``index`` (a slice or positions
    in the plan)."""
    if mode == ANALOGY:
        return _analogy_guide(denoiser, terms, analogy, index, device)
    return ClassifierFreeGuidance(
        denoiser,
        denoiser.null_labels,
        [torch.as_tensor(term.weights[index], device=device) for term in terms],
        [term.scale for term in terms],
        ("compositional", "joint")[mode],
    )


def _classifier_guidance(
    trained: TrainedModel, guidance: GuidancePlan, classifiers, rows: slice
) -> ClassifierGuidance:
    """The classifier guidance of one batch of cells."""
    device = trained.device
    terms = guidance.classifier_terms
    return ClassifierGuidance(
        [classifiers[term.key] for term in terms],
        [torch.as_tensor(term.weights[rows], device=device) for term in terms],
        [term.scale for term in terms],
        trained.module.guidance.horizon,
    )


def _start(trained: TrainedModel, plan: GenerationPlan, timesteps, rows: slice, callback):
    """The latents one batch starts from at ``timesteps[0]``: noise, noised start latents
    (interpolation) or start latents inverted under their own conditions
    (counterfactuals)."""
    module, device = trained.module, trained.device
    n_cells = rows.stop - rows.start
    if plan.start_latents is None:
        return torch.randn(n_cells, module.n_latent, device=device)
    if plan.inversion is None:
        t0 = torch.full((n_cells,), timesteps[0], device=device, dtype=torch.long)
        return module.schedule.q_sample(plan.start_latents[rows], t0)
    return ddim_invert(
        _denoiser_epsilon(module.diffusion.denoiser, plan.inversion, rows, device),
        module.schedule,
        plan.start_latents[rows],
        timesteps[::-1],
        callback=callback,
    )


def sample(
    trained: TrainedModel,
    plan: GenerationPlan,
    classifiers: Mapping[str, nn.Module],
    progress_bar: bool = True,
) -> Iterator[tuple[slice, torch.Tensor]]:
    """Run the plan's denoising loop batch by batch; yield each batch's rows and its clean
    latents (standardised, as the diffusion sees them).

    ``classifiers`` are the guidance classifiers by condition (those of
    ``plan.guidance.classifier_terms`` at least). With the plan's seed, torch's random state
    is fixed from the first batch to the last (the work between batches, such as drawing
    their counts, included) and the caller's restored afterwards.
    """
    module, device = trained.module, trained.device
    module.eval()
    for classifier in classifiers.values():
        classifier.eval()
    timesteps = plan.timesteps(module.schedule)
    n_cells, batch_size = plan.n_cells, plan.settings.batch_size
    n_batches = math.ceil(n_cells / batch_size)
    passes = 1 if plan.inversion is None else 2
    with (
        seeded(plan.settings.seed, device),
        tqdm(
            total=n_batches * len(timesteps) * passes,
            desc="Generating",
            unit="step",
            disable=not progress_bar,
            leave=False,
        ) as bar,
    ):
        for start in range(0, n_cells, batch_size):
            rows = slice(start, min(start + batch_size, n_cells))
            x = _start(trained, plan, timesteps, rows, callback=lambda: bar.update(1))
            x = run_sampler(
                plan.settings.sampler,
                _denoiser_epsilon(module.diffusion.denoiser, plan.guidance, rows, device),
                module.schedule,
                x,
                timesteps,
                _classifier_guidance(trained, plan.guidance, classifiers, rows),
                callback=lambda: bar.update(1),
            )
            yield rows, x


def sampled_latents(
    trained: TrainedModel, plan: GenerationPlan, classifiers: Mapping[str, nn.Module]
) -> np.ndarray:
    """All of the plan's latents (unstandardised, on the CPU), without a progress bar."""
    diffusion = trained.module.diffusion
    return np.vstack(
        [
            diffusion.unstandardize(x).detach().cpu().numpy().astype(np.float32)
            for _, x in sample(trained, plan, classifiers, progress_bar=False)
        ]
    )
