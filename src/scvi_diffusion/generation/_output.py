"""The output: the generated cells as an AnnData, in memory or streamed to a file.

The counts (sparse) or normalised expression fill ``X`` batch by batch; the plan's obs, the
latents in ``obsm['X_latent']`` and what ``uns['scdiffusion']`` records of the generation (the
sampler, the guidance, where library sizes came from, the start of counterfactuals) complete
it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

from .._constants import LATENT_OBSM_KEY, PARAMS_UNS_KEY
from .._streaming import write_h5ad_in_batches
from ._analogy import guided_counts
from ._decode import Batch
from ._plan import GenerationPlan
from ._trained import TrainedModel


def generation_record(trained: TrainedModel, plan: GenerationPlan) -> dict:
    """What the output's ``uns['scdiffusion']`` records of the generation (with several
    denoiser conditions, how many cells each kind of guidance steered)."""
    settings, guidance = plan.settings, plan.guidance
    record = {
        "guidance": trained.guidance,
        "sampler": settings.sampler,
        "n_steps": len(plan.timesteps(trained.module.schedule)),
        "guidance_scale": {k: float(v) for k, v in guidance.scales.items()},
        "output": settings.output,
        "library_size": "drawn from training cells with the same conditions",
        **trained.record,
    }
    if settings.seed is not None:
        record["seed"] = int(settings.seed)
    if plan.trajectory is not None:
        record["interpolation"] = plan.trajectory.params()
    if trained.continuous_keys:
        record["continuous_conditions"] = {
            k: trained.space.values[k].record() for k in trained.continuous_keys
        }
        record["library_size"] = (
            "drawn from training cells with the same conditions and the training value "
            "nearest each requested value"
        )
    if len(trained.denoiser_keys) > 1:
        record["guided"] = guided_counts(guidance.joint_cells, guidance.analogy)
    if plan.counterfactual is not None:
        record["library_size"] = "kept from the source cells"
        record["counterfactual"] = plan.counterfactual.as_dict(plan.start_time)
    return record


def assemble(
    trained: TrainedModel, plan: GenerationPlan, batches: Iterator[Batch], out: Path | None
) -> ad.AnnData:
    """The generated cells as an AnnData, or streamed batch by batch to ``out``."""
    var = pd.DataFrame(index=trained.var_names.copy())
    record = generation_record(trained, plan)
    if out is not None:
        skeleton = ad.AnnData(obs=plan.obs, var=var, uns={PARAMS_UNS_KEY: record})
        return write_h5ad_in_batches(
            out, skeleton, batches, LATENT_OBSM_KEY, trained.module.n_latent
        )
    latents, blocks = zip(*batches, strict=True)
    values = (
        sparse.vstack(blocks, format="csr")
        if plan.settings.output == "counts"
        else np.vstack(blocks)
    )
    result = ad.AnnData(X=values, obs=plan.obs, var=var)
    result.obsm[LATENT_OBSM_KEY] = np.vstack(latents)
    result.uns[PARAMS_UNS_KEY] = record
    return result
