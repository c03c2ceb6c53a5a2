"""Running a generation plan, batch by batch: noise (or start latents), the sampler with
guidance, unstandardise, decode, counts; then the cells as an AnnData, in memory or streamed."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import anndata as ad
import numpy as np
import pandas as pd
import torch
from scipy import sparse
from torch import nn
from tqdm.auto import tqdm

from .._constants import LATENT_OBSM_KEY, NORMALIZED_TARGET_SUM, PARAMS_UNS_KEY
from .._seeding import seeded
from ..diffusion import (
    AnalogyGuidance,
    ClassifierFreeGuidance,
    ClassifierGuidance,
    ddim_invert,
    run_sampler,
)
from ..module._count_sampling import coupled_counts, sample_counts, to_csr
from ._analogy import Analogy
from ._generation_plan import GenerationPlan, GuidanceTerm
from ._streaming import write_h5ad_in_batches

Batch = tuple[np.ndarray, np.ndarray | sparse.csr_matrix]
"""One batch of generated cells: their latents and their counts (or normalised values)."""


def _denoiser_epsilon(
    module,
    terms: list[GuidanceTerm],
    rows: slice,
    device,
    joint_cells: np.ndarray | None,
    analogy: Analogy | None = None,
):
    """The denoiser's noise prediction, guided classifier-free by ``terms`` if any: by
    analogy for the analogy's cells, joint for the other ``joint_cells``, compositional for
    the rest. A batch that mixes them runs each guidance on its own cells only."""
    denoiser = module.diffusion.denoiser
    if not terms:
        return denoiser
    n_cells = rows.stop - rows.start
    modes = np.zeros(n_cells, dtype=np.int64)  # 0 compositional, 1 joint, 2 analogy
    if joint_cells is not None:
        modes[joint_cells[rows]] = 1
    if analogy is not None:
        modes[analogy.cells[rows]] = 2
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


def _guide(denoiser, mode: int, terms: list[GuidanceTerm], analogy, index, device):
    """One kind of classifier-free guidance (``mode``: 0 compositional, 1 joint, 2 analogy)
    of the cells at ``index`` (a slice or positions in the plan)."""
    if mode == 2:
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
    return ClassifierFreeGuidance(
        denoiser,
        denoiser.null_labels,
        [torch.as_tensor(term.weights[index], device=device) for term in terms],
        [term.scale for term in terms],
        ("compositional", "joint")[mode],
    )


def _guided_epsilon(module, plan: GenerationPlan, classifiers, rows: slice, device):
    """The noise prediction and the classifier guidance of one batch of cells."""
    guidance = ClassifierGuidance(
        classifiers,
        [torch.as_tensor(term.weights[rows], device=device) for term in plan.classifier_terms],
        [term.scale for term in plan.classifier_terms],
        module.guidance.horizon,
    )
    epsilon = _denoiser_epsilon(
        module, plan.denoiser_terms, rows, device, plan.joint_cells, plan.analogy
    )
    return epsilon, guidance


def _start(module, plan: GenerationPlan, rows: slice, device, callback) -> torch.Tensor:
    """The latents one batch starts from at ``plan.timesteps[0]``: noise, noised start
    latents (interpolation) or start latents inverted under their own conditions
    (counterfactuals)."""
    n_cells = rows.stop - rows.start
    if plan.start_latents is None:
        return torch.randn(n_cells, module.n_latent, device=device)
    if plan.inversion_terms is None:
        t0 = torch.full((n_cells,), plan.timesteps[0], device=device, dtype=torch.long)
        return module.schedule.q_sample(plan.start_latents[rows], t0)
    return ddim_invert(
        _denoiser_epsilon(module, plan.inversion_terms, rows, device, plan.inversion_joint_cells),
        module.schedule,
        plan.start_latents[rows],
        plan.timesteps[::-1],
        callback=callback,
    )


def sample_plan(
    module,
    plan: GenerationPlan,
    classifiers: Sequence[nn.Module],
    device: torch.device,
    progress_bar: bool = True,
) -> Iterator[Batch]:
    """Run ``plan`` batch by batch; yield each batch's latents and values.

    ``classifiers`` are the guidance classifiers of ``plan.classifier_terms``, in order.
    """
    module.eval()
    for classifier in classifiers:
        classifier.eval()
    n_cells, batch_size = plan.n_cells, plan.settings.batch_size
    n_batches = math.ceil(n_cells / batch_size)
    passes = 1 if plan.inversion_terms is None else 2
    with (
        seeded(plan.settings.seed, device),
        tqdm(
            total=n_batches * len(plan.timesteps) * passes,
            desc="Generating",
            unit="step",
            disable=not progress_bar,
            leave=False,
        ) as bar,
    ):
        for start in range(0, n_cells, batch_size):
            stop = min(start + batch_size, n_cells)
            rows = slice(start, stop)
            x = _start(module, plan, rows, device, callback=lambda: bar.update(1))
            epsilon_fn, guidance = _guided_epsilon(module, plan, classifiers, rows, device)
            x = run_sampler(
                plan.settings.sampler,
                epsilon_fn,
                module.schedule,
                x,
                plan.timesteps,
                guidance,
                callback=lambda: bar.update(1),
            )
            yield _decoded(module, plan, x, rows, device)


def _decoded(module, plan: GenerationPlan, x: torch.Tensor, rows: slice, device) -> Batch:
    """Unstandardise and decode one batch of sampled latents into counts or expression."""
    z = module.diffusion.unstandardize(x)
    library = torch.as_tensor(plan.library[rows], dtype=torch.float32, device=device)
    batch_index = torch.as_tensor(plan.batch_index[rows], device=device)
    counts, fractions = module.decode(z, library, batch_index)
    if plan.settings.output == "counts" and plan.source_counts is not None:
        source = module.diffusion.unstandardize(plan.start_latents[rows])
        _, source_fractions = module.decode(source, library, batch_index)
        observed = torch.as_tensor(plan.source_counts[rows].toarray(), device=device)
        block = to_csr(coupled_counts(observed, source_fractions, fractions, library))
    elif plan.settings.output == "counts":
        block = to_csr(sample_counts(counts))
    else:
        block = (fractions * NORMALIZED_TARGET_SUM).cpu().numpy().astype(np.float32)
    return z.detach().cpu().numpy().astype(np.float32), block


def assemble(
    plan: GenerationPlan, var_names: pd.Index, batches: Iterator[Batch], out, n_latent: int
) -> ad.AnnData:
    """The generated cells as an AnnData, or streamed batch by batch to ``out``."""
    var = pd.DataFrame(index=var_names.copy())
    if out is not None:
        skeleton = ad.AnnData(obs=plan.obs, var=var, uns={PARAMS_UNS_KEY: plan.params})
        return write_h5ad_in_batches(out, skeleton, batches, LATENT_OBSM_KEY, n_latent)
    latents, blocks = zip(*batches, strict=True)
    values = (
        sparse.vstack(blocks, format="csr")
        if plan.settings.output == "counts"
        else np.vstack(blocks)
    )
    result = ad.AnnData(X=values, obs=plan.obs, var=var)
    result.obsm[LATENT_OBSM_KEY] = np.vstack(latents)
    result.uns[PARAMS_UNS_KEY] = plan.params
    return result
