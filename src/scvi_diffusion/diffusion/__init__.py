"""Latent diffusion apart from any network: the noise schedule, the samplers and guidance."""

from ._guidance import (
    COMPOSITIONS,
    AnalogyGuidance,
    ClassifierFreeGuidance,
    ClassifierGuidance,
)
from ._samplers import (
    SAMPLER_SPACING,
    SAMPLERS,
    ddim_invert,
    ddim_sample,
    ddpm_sample,
    dpmpp_2m_sample,
    run_sampler,
)
from ._schedule import SPACINGS, LinearNoiseSchedule

__all__ = [
    "COMPOSITIONS",
    "SAMPLERS",
    "SAMPLER_SPACING",
    "SPACINGS",
    "AnalogyGuidance",
    "ClassifierFreeGuidance",
    "ClassifierGuidance",
    "LinearNoiseSchedule",
    "ddim_invert",
    "ddim_sample",
    "ddpm_sample",
    "dpmpp_2m_sample",
    "run_sampler",
]
