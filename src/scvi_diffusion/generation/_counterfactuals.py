"""Planning counterfactuals: these real cells, under the requested conditions.

Each source cell keeps every registered condition that was not requested, its batch, its
library size and (with counts output and ``keep_source_counts``) its counts; it is encoded,
inverted under its own conditions to the start time, and denoised under the new ones. Toward a
combination never seen in training, the change is taken by analogy from the groups that show
it. The start time is the one requested, or left for :mod:`._start_time` to find.
"""

from __future__ import annotations

import pandas as pd

from .._constants import SOURCE_CELL_KEY
from ._guidance import inversion_guidance, plan_guidance, with_counterfactual_analogy
from ._obs import counterfactual_names, generation_token, output_obs
from ._plan import CounterfactualRecord, GenerationPlan
from ._request import GenerationRequest
from ._requested import parse_requests
from ._source_cells import SourceCells, own_conditions, source_cells
from ._trained import TrainedModel


def _record(
    changed, cells: SourceCells, trained: TrainedModel, counts_kept: bool | None
) -> CounterfactualRecord:
    """What ``uns`` says of the counterfactuals (``counts_kept`` None: normalised output)."""
    counts = None
    if counts_kept is not None:
        counts = (
            "the source cells', moved by the predicted change"
            if counts_kept
            else "drawn from the decoder"
        )
    return CounterfactualRecord(
        changed=list(changed),
        kept=[*cells.kept.columns, *([] if trained.batch_key is None else [trained.batch_key])],
        start="DDIM inversion under the source cells' own conditions"
        if trained.guidance == "classifier_free"
        else "DDIM inversion with the unconditional denoiser",
        counts=counts,
    )


def plan_counterfactuals(request: GenerationRequest, trained: TrainedModel) -> GenerationPlan:
    """The counterfactuals of ``request.source``: the requested conditions changed, the rest
    of each cell kept, its latent the start; at ``request.start_time`` (None: to be found)."""
    space, source = trained.space, request.source
    requested = parse_requests(
        space, source.n_obs, request.keywords, request.conditions, per_source_cell=True
    )
    cells = source_cells(
        source,
        trained.var_names,
        trained.layer,
        space,
        list(requested.columns),
        trained.batch_key,
        trained.batch_categories,
    )
    registered = trained.registered
    keys = [*registered, *(k for k in requested.columns if k not in registered)]
    assignment = pd.DataFrame(
        {k: (requested if k in requested.columns else cells.kept)[k] for k in keys}
    )
    start_latents = trained.cells.encode(
        cells.registrable(trained.layer, trained.batch_key, assignment[registered])
    )
    guidance = plan_guidance(trained, assignment, keys, None, request.guidance_scale)
    own = own_conditions(cells, assignment)
    guidance = with_counterfactual_analogy(trained, guidance, own, assignment)
    names = counterfactual_names(cells.names, generation_token())
    obs = output_obs(assignment, cells.batch, trained.batch_key, None, space, names)
    obs[SOURCE_CELL_KEY] = cells.names.astype(str).to_numpy()
    output = request.settings.output
    coupled = request.keep_source_counts and output == "counts"
    return GenerationPlan(
        settings=request.settings,
        obs=obs,
        library=cells.library,
        batch_index=cells.batch_codes,
        guidance=guidance,
        start_time=request.start_time,
        start_latents=start_latents,
        inversion=inversion_guidance(trained, own),
        source_counts=cells.counts if coupled else None,
        counterfactual=_record(
            requested.columns, cells, trained, coupled if output == "counts" else None
        ),
    )
