"""Generation as a road of steps, as a diffusion pipeline is built.

``ScDiffusion.generate`` wires them, each called once, in order:

1. :func:`check_request` (``_request``): the arguments, checked, as a request;
2. :func:`plan_new_cells` (``_new_cells``) or :func:`plan_counterfactuals`
   (``_counterfactuals``): the conditions per cell (``_requested``), their reference cells
   (``_reference_cells``), guidance (``_guidance``, ``_analogy``) and start, as a
   :class:`GenerationPlan` (``_plan``);
3. the guidance classifiers the plan needs, trained on demand by the model;
4. :func:`reaching_start_time` (``_start_time``): counterfactuals without a start time;
5. :func:`sample` (``_sampling``): the denoising loop, batch by batch;
6. :func:`decode` (``_decode``): latents to counts or expression;
7. :func:`assemble` (``_output``): the AnnData, in memory or streamed to a file.

Every step takes what the one before returned and what it needs of the trained model as a
:class:`TrainedModel` (``_trained``), and never calls back into the model.
"""

from ._analogy import Analogy, TrainingCombinations
from ._counterfactuals import plan_counterfactuals
from ._decode import decode
from ._new_cells import plan_new_cells
from ._output import assemble
from ._plan import GenerationPlan, GuidancePlan, GuidanceTerm
from ._request import GenerationRequest, RequestContext, SamplingSettings, check_request
from ._sampling import sample, sampled_latents
from ._start_time import reaching_start_time
from ._trained import TrainedModel, TrainingCells

__all__ = [
    "Analogy",
    "GenerationPlan",
    "GenerationRequest",
    "GuidancePlan",
    "GuidanceTerm",
    "RequestContext",
    "SamplingSettings",
    "TrainedModel",
    "TrainingCells",
    "TrainingCombinations",
    "assemble",
    "check_request",
    "decode",
    "plan_counterfactuals",
    "plan_new_cells",
    "reaching_start_time",
    "sample",
    "sampled_latents",
]
