"""Step 1: the request, checked before anything slow.

``generate()``'s arguments become a :class:`GenerationRequest`: the sampling settings with their
defaults filled in, the conditions as the user gave them (keywords, a dict or a table), and
what kind of cells to make (new cells, a trajectory or a sweep, counterfactuals of source
cells). Every error that needs no look at the model's data is raised here; the conditions
themselves are checked against the training categories by the next step.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path
from typing import NamedTuple

import anndata as ad
import pandas as pd

from .._constants import (
    COUNTERFACTUAL_SAMPLER,
    DEFAULT_INTERPOLATION_START_TIME,
    DEFAULT_SAMPLER,
    DEFAULT_STEPS,
    OUTPUTS,
)
from .._streaming import validate_out
from .._validation import check_bool, check_seed, one_of, positive_int
from ..diffusion import SAMPLERS


class RequestContext(NamedTuple):
    """What checking a request needs to know of the model."""

    registered: Sequence[str]
    """Its conditions, categorical and continuous."""
    parameters: Sequence[str]
    """``generate``'s parameters, for the "did you mean" hint."""
    autoencoder: str
    n_timesteps: int


@dataclass(frozen=True)
class SamplingSettings:
    """How the plan's cells are sampled and returned, checked."""

    sampler: str
    n_steps: int
    output: str
    batch_size: int
    seed: int | None


@dataclass(frozen=True)
class GenerationRequest:
    """One call of ``generate``, checked: see its parameters."""

    settings: SamplingSettings
    n: int | None
    keywords: dict[str, object]
    """Conditions given as keywords (``cell_type=``, ``tissue=``, registered columns)."""
    conditions: Mapping[str, object] | pd.DataFrame | pd.Series | None
    source: ad.AnnData | None
    interpolate: Mapping[str, tuple] | None
    n_points: int
    start_time: int | None
    """Interpolation: where it starts (600 unless given). Counterfactuals: the start time
    given, or None to search for one."""
    start_time_given: bool
    keep_source_counts: bool
    guidance_scale: float | Mapping[str, float] | None
    progress_bar: bool
    out: Path | None

    @property
    def counterfactual(self) -> bool:
        """Whether the cells are counterfactuals of ``source``."""
        return self.source is not None


def check_sampling_arguments(
    sampler, n_steps, output, batch_size, seed, autoencoder: str, n_timesteps: int
) -> SamplingSettings:
    """``generate``'s sampler, steps, output, batch size and seed, with their defaults."""
    if sampler is None:
        sampler = DEFAULT_SAMPLER[autoencoder]
    sampler = one_of("sampler", sampler, SAMPLERS)
    if n_steps is None:
        n_steps = DEFAULT_STEPS.get(sampler, n_timesteps)
    output = one_of("output", output, OUTPUTS)
    n_steps = positive_int("n_steps", n_steps, allow_none=False)
    if n_steps > n_timesteps:
        raise ValueError(f"`n_steps` must be at most T={n_timesteps}, got {n_steps}.")
    batch_size = positive_int("batch_size", batch_size, allow_none=False)
    return SamplingSettings(sampler, n_steps, output, batch_size, check_seed(seed))


def check_start_time(start_time, n_timesteps: int) -> int:
    """A valid ``start_time``: an integer in ``[1, T - 1]``."""
    if isinstance(start_time, bool) or not isinstance(start_time, Integral):
        raise TypeError(f"`start_time` must be an integer, got {start_time!r}.")
    if not 0 < start_time < n_timesteps:
        raise ValueError(f"`start_time` must be in [1, {n_timesteps - 1}], got {start_time}.")
    return int(start_time)


def check_interpolation_arguments(n_points, start_time, n_timesteps: int) -> tuple[int, int]:
    """Valid ``n_points`` (at least 2) and ``start_time`` (in ``[1, T - 1]``)."""
    n_points = positive_int("n_points", n_points, allow_none=False)
    if n_points < 2:
        raise ValueError(f"`n_points` must be at least 2, got {n_points}.")
    return n_points, check_start_time(start_time, n_timesteps)


def check_counterfactual_arguments(n: int | None, interpolate, source: ad.AnnData) -> None:
    """``generate``'s arguments that do not go with ``source``, and the source's type."""
    if not isinstance(source, ad.AnnData):
        raise TypeError(f"`source` must be an AnnData of real cells, got {type(source).__name__}.")
    if source.n_obs == 0:
        raise ValueError("`source` has no cells; give at least one cell to change.")
    if n is not None and n != source.n_obs:
        raise ValueError(
            f"Counterfactuals make one cell per source cell ({source.n_obs}); leave `n` out "
            f"with `source`, got n={n!r}."
        )
    if interpolate is not None:
        raise ValueError(
            "`interpolate` and `source` do not go together: interpolation starts from training "
            "cells of its source category. Give one of them."
        )


def counterfactual_sampler(autoencoder: str) -> str | None:
    """The default sampler of counterfactuals: the model's, unless that is the ancestral DDPM
    (None keeps the model's default)."""
    return COUNTERFACTUAL_SAMPLER if DEFAULT_SAMPLER[autoencoder] == "ddpm" else None


def check_keyword_conditions(
    values: dict[str, object], registered: Sequence[str], parameters: Sequence[str]
) -> dict[str, object]:
    """Conditions given to ``generate`` as keywords: each must be a registered condition (a
    TypeError, as Python's for an unknown keyword, names the valid ones otherwise).
    ``parameters`` are ``generate``'s own, for the "did you mean" hint."""
    unknown = [name for name in values if name not in registered]
    if unknown:
        close = difflib.get_close_matches(unknown[0], [*parameters, *registered], n=1)
        raise TypeError(
            f"generate() got an unexpected keyword argument {unknown[0]!r}"
            + (f" (did you mean {close[0]!r}?)" if close else "")
            + ": it is neither a parameter of generate() nor a registered condition. "
            "Registered conditions, "
            f"each usable as a keyword: {list(registered) or 'none'}. Other obs columns go in "
            f"`conditions={{{unknown[0]!r}: ...}}` (a guidance classifier is then trained "
            "for them on demand), or register them with "
            "`ScDiffusion.setup_anndata(..., condition_keys=[...])`."
        )
    return values


def _checked_start(
    n, source, interpolate, n_points, start_time, n_timesteps: int
) -> tuple[int, int | None]:
    """``n_points`` and the start time: for counterfactuals the one given (None: to search
    for), for a trajectory the one given or its default."""
    if source is not None:
        check_counterfactual_arguments(n, interpolate, source)
        return n_points, None if start_time is None else check_start_time(start_time, n_timesteps)
    if start_time is None:
        start_time = DEFAULT_INTERPOLATION_START_TIME
    return check_interpolation_arguments(n_points, start_time, n_timesteps)


def check_request(
    model: RequestContext,
    *,
    n,
    cell_type,
    tissue,
    conditions,
    source,
    interpolate,
    n_points,
    start_time,
    keep_source_counts,
    guidance_scale,
    sampler,
    n_steps,
    output,
    batch_size,
    seed,
    progress_bar,
    out,
    condition_values: dict[str, object],
) -> GenerationRequest:
    """``generate``'s arguments (by its parameter names; ``condition_values`` the keyword
    conditions) as a checked request, in the order ``generate`` has always checked them.

    ``model`` says what the checks need to know of the model.
    """
    registered, parameters, autoencoder, n_timesteps = model
    if source is not None and sampler is None:
        sampler = counterfactual_sampler(autoencoder)
    settings = check_sampling_arguments(
        sampler, n_steps, output, batch_size, seed, autoencoder, n_timesteps
    )
    progress_bar = check_bool("progress_bar", progress_bar)
    out = validate_out(out)
    keywords = {
        "cell_type": cell_type,
        "tissue": tissue,
        **check_keyword_conditions(condition_values, registered, parameters),
    }
    keep_source_counts = check_bool("keep_source_counts", keep_source_counts)
    n_points, checked_start_time = _checked_start(
        n, source, interpolate, n_points, start_time, n_timesteps
    )
    return GenerationRequest(
        settings=settings,
        n=n,
        keywords=keywords,
        conditions=conditions,
        source=source,
        interpolate=interpolate,
        n_points=n_points,
        start_time=checked_start_time,
        start_time_given=start_time is not None,
        keep_source_counts=keep_source_counts,
        guidance_scale=guidance_scale,
        progress_bar=progress_bar,
        out=out,
    )
