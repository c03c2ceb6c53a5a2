"""Samplers for latent diffusion: DDPM, DDIM and DPM-Solver++(2M).

A sampler only needs a function that predicts noise and, optionally, a function that returns
the gradient of the guidance log-probability (see :mod:`._guidance`). Timesteps are always
indices into the full training schedule ``0 .. n_timesteps - 1``, so a sampler with fewer steps
walks a sub-sequence of it.

As with a diffusers scheduler, each sampler is a ``step`` that moves ``x`` from one timestep to
the next (DPM-Solver++(2M) keeps its previous step as state), and :func:`run_sampler` is the
one loop that drives any of them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch

from ._schedule import LinearNoiseSchedule

EpsilonFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
GuidanceFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor | None]

SAMPLERS = ("dpmpp_2m", "ddim", "ddpm")
SAMPLER_SPACING = {"dpmpp_2m": "log_snr", "ddim": "uniform", "ddpm": "uniform"}
"""Timestep spacing each sampler is run with."""


def _timestep_tensor(t: int, n: int, device) -> torch.Tensor:
    return torch.full((n,), t, dtype=torch.long, device=device)


def _guided_prediction(
    epsilon_fn: EpsilonFn,
    schedule: LinearNoiseSchedule,
    x: torch.Tensor,
    t_vec: torch.Tensor,
    guidance_fn: GuidanceFn | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise prediction with classifier guidance as the score correction
    ``eps - sqrt(1 - alpha_bar_t) * grad``, and the ``x0`` it implies."""
    signal_t, sigma_t = schedule.signal_noise(t_vec, x)
    with torch.no_grad():
        eps = epsilon_fn(x, t_vec)
    grad = guidance_fn(x, t_vec) if guidance_fn is not None else None
    if grad is not None:
        eps = eps - sigma_t * grad
    return eps, (x - sigma_t * eps) / signal_t


class _SamplerStep:
    """One sampler's update from a timestep to the next, driven by :func:`run_sampler`.

    A new instance is made for every run, so a sampler may keep state between its steps.

    Parameters
    ----------
    epsilon_fn
        Noise prediction, called as ``epsilon_fn(x_t, t) -> eps``.
    schedule
        The noise schedule the timesteps index.
    guidance_fn
        Scaled gradient of the guidance log-probability, called as ``guidance_fn(x_t, t)``;
        None, or a call that returns None, means no guidance.
    """

    def __init__(
        self,
        epsilon_fn: EpsilonFn,
        schedule: LinearNoiseSchedule,
        guidance_fn: GuidanceFn | None = None,
    ):
        self.epsilon_fn = epsilon_fn
        self.schedule = schedule
        self.guidance_fn = guidance_fn

    def step(self, x: torch.Tensor, t: int, s: int, t_vec: torch.Tensor) -> torch.Tensor:
        """Move ``x`` from timestep ``t`` to ``s < t``.

        Parameters
        ----------
        x
            The cells at timestep ``t``, ``(n_cells, n_latent)``.
        t
            The current timestep.
        s
            The next timestep; ``-1`` after the last one, where the sampler returns clean data.
        t_vec
            ``t`` for every cell, ``(n_cells,)``, as the networks take it.

        Returns
        -------
        torch.Tensor
            The cells at timestep ``s``.
        """
        raise NotImplementedError


class _DDPMStep(_SamplerStep):
    """Ancestral DDPM step: a draw from the (guided) posterior ``q(x_s | x_t, x_0)``."""

    def step(self, x: torch.Tensor, t: int, s: int, t_vec: torch.Tensor) -> torch.Tensor:
        schedule = self.schedule
        with torch.no_grad():
            eps = self.epsilon_fn(x, t_vec)
            x0 = schedule.predict_x0(x, t_vec, eps)
            mean, variance = schedule.posterior_mean_variance(x0, x, t_vec, s)
        grad = self.guidance_fn(x, t_vec) if self.guidance_fn is not None else None
        if grad is not None:
            mean = mean + variance * grad
        # the last step returns the mean: no noise is left to add
        return mean + variance.sqrt() * torch.randn_like(x) if s >= 0 else mean


class _DDIMStep(_SamplerStep):
    """Deterministic DDIM step (eta = 0)."""

    def step(self, x: torch.Tensor, t: int, s: int, t_vec: torch.Tensor) -> torch.Tensor:
        signal_s, sigma_s = self.schedule.signal_noise(
            _timestep_tensor(s, x.shape[0], x.device), x
        )
        eps, x0 = _guided_prediction(self.epsilon_fn, self.schedule, x, t_vec, self.guidance_fn)
        return signal_s * x0 + sigma_s * eps


class _DPMSolverPP2MStep(_SamplerStep):
    """DPM-Solver++(2M) step; keeps the previous step's ``x0`` and ``h`` for the second order."""

    def __init__(
        self,
        epsilon_fn: EpsilonFn,
        schedule: LinearNoiseSchedule,
        guidance_fn: GuidanceFn | None = None,
    ):
        super().__init__(epsilon_fn, schedule, guidance_fn)
        self.previous_x0: torch.Tensor | None = None
        self.previous_h: float | None = None

    def step(self, x: torch.Tensor, t: int, s: int, t_vec: torch.Tensor) -> torch.Tensor:
        schedule = self.schedule
        _, x0 = _guided_prediction(self.epsilon_fn, schedule, x, t_vec, self.guidance_fn)
        if s < 0:
            return x0
        h = float(schedule.half_log_snr(s) - schedule.half_log_snr(t))
        signal_s, sigma_s = schedule.signal_noise(torch.tensor([s]), x)
        data = x0
        if self.previous_x0 is not None:
            half_inverse_ratio = 0.5 * h / self.previous_h
            data = (1.0 + half_inverse_ratio) * x0 - half_inverse_ratio * self.previous_x0
        sigma_t = schedule.signal_noise(t_vec[:1], x)[1]
        x = (sigma_s / sigma_t) * x - signal_s * math.expm1(-h) * data
        self.previous_x0, self.previous_h = x0, h
        return x


_STEPS: dict[str, type[_SamplerStep]] = {
    "dpmpp_2m": _DPMSolverPP2MStep,
    "ddim": _DDIMStep,
    "ddpm": _DDPMStep,
}


def run_sampler(
    sampler: Literal["dpmpp_2m", "ddim", "ddpm"],
    epsilon_fn: EpsilonFn,
    schedule: LinearNoiseSchedule,
    x: torch.Tensor,
    timesteps: Sequence[int],
    guidance_fn: GuidanceFn | None = None,
    callback: Callable[[], None] | None = None,
) -> torch.Tensor:
    """Dispatch to the named sampler."""
    if sampler not in _STEPS:
        raise ValueError(f"Unknown sampler {sampler!r}; choose one of {list(_STEPS)}.")
    step = _STEPS[sampler](epsilon_fn, schedule, guidance_fn).step
    # the one sampling loop: each timestep t is paired with the next one, s (-1 after the last)
    timesteps = list(timesteps)
    for i, t in enumerate(timesteps):
        s = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        t_vec = _timestep_tensor(t, x.shape[0], x.device)
        x = step(x, t, s, t_vec)
        if callback is not None:
            callback()
    return x


def ddpm_sample(
    epsilon_fn: EpsilonFn,
    schedule: LinearNoiseSchedule,
    x: torch.Tensor,
    timesteps: Sequence[int],
    guidance_fn: GuidanceFn | None = None,
    callback: Callable[[], None] | None = None,
) -> torch.Tensor:
    """Ancestral DDPM sampling (Ho et al., 2020) with classifier guidance.

    With all ``T`` timesteps this is the original sampler; with fewer, the schedule is respaced
    (Nichol & Dhariwal, 2021). Guidance shifts the posterior mean by ``Sigma_t * grad`` where
    ``grad`` is the scaled gradient of ``log p(y | x_t)`` (Dhariwal & Nichol, 2021).
    """
    return run_sampler("ddpm", epsilon_fn, schedule, x, timesteps, guidance_fn, callback)


def ddim_sample(
    epsilon_fn: EpsilonFn,
    schedule: LinearNoiseSchedule,
    x: torch.Tensor,
    timesteps: Sequence[int],
    guidance_fn: GuidanceFn | None = None,
    callback: Callable[[], None] | None = None,
) -> torch.Tensor:
    """Deterministic DDIM sampling (Song et al., 2021, eta = 0) with classifier guidance.

    Guidance enters as the score correction ``eps - sqrt(1 - alpha_bar_t) * grad``.
    """
    return run_sampler("ddim", epsilon_fn, schedule, x, timesteps, guidance_fn, callback)


def dpmpp_2m_sample(
    epsilon_fn: EpsilonFn,
    schedule: LinearNoiseSchedule,
    x: torch.Tensor,
    timesteps: Sequence[int],
    guidance_fn: GuidanceFn | None = None,
    callback: Callable[[], None] | None = None,
) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al., 2022): deterministic, second order, multistep.

    Integrates the probability-flow ODE in the data prediction ``x0`` with the exponential
    integrator in ``lambda = log(signal / sigma)``, using the ``x0`` of the previous step for
    the second-order term, so it needs one network evaluation per step, like DDIM, but reaches
    DDIM's quality in fewer steps. The first step is first order (DDIM); the last one returns
    ``x0``. Guidance enters as in :func:`ddim_sample`.
    """
    return run_sampler("dpmpp_2m", epsilon_fn, schedule, x, timesteps, guidance_fn, callback)


def ddim_invert(
    epsilon_fn: EpsilonFn,
    schedule: LinearNoiseSchedule,
    x0: torch.Tensor,
    timesteps: Sequence[int],
    callback: Callable[[], None] | None = None,
) -> torch.Tensor:
    """DDIM inversion: clean data run up the deterministic DDIM path to ``timesteps[-1]``.

    The DDIM update taken backwards (Song et al., 2021; used for image editing as "DDIM
    inversion"): from ``x_t`` the noise prediction ``eps(x_t, t)`` and the ``x0`` it implies
    give ``x_s = signal_s * x0 + sigma_s * eps`` at the next, higher timestep ``s``. Unlike
    noising with fresh noise, the result keeps what makes each input distinct, so a
    deterministic sampler started from it returns close to the input under the same
    conditions, and a version of the same input under others.

    Parameters
    ----------
    epsilon_fn
        Noise prediction, called as ``epsilon_fn(x_t, t)``.
    schedule
        The noise schedule the timesteps index.
    x0
        Clean (standardised) latents, ``(n_cells, n_latent)``.
    timesteps
        Ascending timesteps to pass through; the last is where the result lies.
    callback
        Called after every step (a progress bar's update).

    Returns
    -------
    torch.Tensor
        The latents at ``timesteps[-1]``.
    """
    timesteps = list(timesteps)
    if any(later <= earlier for earlier, later in itertools.pairwise(timesteps)):
        raise ValueError(
            "`timesteps` must be strictly ascending for an inversion (a sampler's timesteps "
            "reversed), got " + (f"{timesteps[:5]}..." if len(timesteps) > 5 else f"{timesteps}.")
        )
    x = x0
    previous = None
    for t in timesteps:
        t_vec = _timestep_tensor(t, x.shape[0], x.device)
        # clean data has no timestep: its noise is predicted at the first one
        current = t_vec if previous is None else previous
        with torch.no_grad():
            eps = epsilon_fn(x, current)
        x0 = x if previous is None else schedule.predict_x0(x, current, eps)
        signal_t, sigma_t = schedule.signal_noise(t_vec, x)
        x = signal_t * x0 + sigma_t * eps
        previous = t_vec
        if callback is not None:
            callback()
    return x
