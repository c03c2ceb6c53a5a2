"""Post-processing: clean latents to counts or normalised expression, batch by batch.

The latents are unstandardised and decoded at each cell's library size and batch. Counts are
drawn from the decoder's likelihood, or, for counterfactuals that keep their source cells'
counts, the source counts moved by the change the model predicts between the source cell and
its counterfactual.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch
from scipy import sparse

from .._constants import NORMALIZED_TARGET_SUM
from ..module._count_sampling import coupled_counts, sample_counts, to_csr
from ._plan import GenerationPlan
from ._trained import TrainedModel

Batch = tuple[np.ndarray, np.ndarray | sparse.csr_matrix]
"""One batch of generated cells: their latents and their counts (or normalised values)."""


def _decoded(trained: TrainedModel, plan: GenerationPlan, x: torch.Tensor, rows: slice) -> Batch:
    """Unstandardise and decode one batch of sampled latents into counts or expression."""
    module, device = trained.module, trained.device
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


def decode(
    trained: TrainedModel, plan: GenerationPlan, batches: Iterable[tuple[slice, torch.Tensor]]
) -> Iterator[Batch]:
    """Each sampled batch (its rows and clean latents) as latents and counts or expression,
    decoded as soon as it is sampled (inside the sampler's seeded block)."""
    for rows, x in batches:
        yield _decoded(trained, plan, x, rows)
