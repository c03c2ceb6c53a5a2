"""The DDPM noise schedule that the samplers walk and the training loss draws from.

Timesteps are indices into the training schedule ``0 .. n_timesteps - 1``; ``-1`` stands for
clean data (no noise), which is where every sampler ends.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch import nn

SPACINGS = ("uniform", "log_snr")
"""Timestep spacings :meth:`LinearNoiseSchedule.sampling_timesteps` accepts."""


class LinearNoiseSchedule(nn.Module):
    """DDPM noise schedule with linearly spaced betas (Ho et al., 2020).

    Parameters
    ----------
    n_timesteps
        Number of diffusion steps ``T``.
    beta_start
        First beta.
    beta_end
        Last beta.
    """

    def __init__(self, n_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02):
        super().__init__()
        if n_timesteps < 2:
            raise ValueError(f"`n_timesteps` must be at least 2, got {n_timesteps}.")
        if not 0 < beta_start < beta_end < 1:
            raise ValueError(
                f"Need 0 < beta_start < beta_end < 1, got beta_start={beta_start}, "
                f"beta_end={beta_end}."
            )
        self.n_timesteps = n_timesteps
        # log(alpha_bar) in float64: 1 - alpha_bar and ratios of alpha_bars are computed from
        # it with expm1, which stays accurate at small t where float32 would cancel.
        betas = np.linspace(beta_start, beta_end, n_timesteps, dtype=np.float64)
        log_alphas_cumprod = np.concatenate([[0.0], np.cumsum(np.log1p(-betas))])
        self.register_buffer(
            "betas", torch.as_tensor(betas, dtype=torch.float32), persistent=False
        )
        self.register_buffer(
            "alphas_cumprod",
            torch.as_tensor(np.exp(log_alphas_cumprod[1:]), dtype=torch.float32),
            persistent=False,
        )
        self.register_buffer(
            "_log_alpha_bar", torch.as_tensor(log_alphas_cumprod), persistent=False
        )

    def _log_ab(self, t) -> torch.Tensor:
        """float64 log alpha_bar at integer timesteps; ``t = -1`` means no noise (0.0)."""
        t = torch.as_tensor(t, device=self._log_alpha_bar.device, dtype=torch.long)
        return self._log_alpha_bar[t + 1]

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """Cumulative product of alphas at integer timesteps; ``t = -1`` means no noise (1.0)."""
        return self._log_ab(t).exp().float()

    def signal_noise(self, t, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``sqrt(alpha_bar_t)`` and ``sqrt(1 - alpha_bar_t)`` as columns, in ``like``'s dtype."""
        log_ab = self._log_ab(t).unsqueeze(-1)
        signal = (0.5 * log_ab).exp()
        noise = (-torch.expm1(log_ab)).sqrt()
        return signal.to(like.dtype), noise.to(like.dtype)

    def half_log_snr(self, t) -> torch.Tensor:
        """float64 ``lambda_t = log(sqrt(alpha_bar_t / (1 - alpha_bar_t)))``; ``+inf`` at -1."""
        log_ab = self._log_ab(t)
        return 0.5 * (log_ab - torch.log(-torch.expm1(log_ab)))

    def q_mean_variance(
        self, x0: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of ``q(x_t | x_0)``."""
        signal, noise = self.signal_noise(t, x0)
        return signal * x0, (noise**2).expand_as(x0)

    def q_sample(
        self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Draw ``x_t ~ q(x_t | x_0)``."""
        if noise is None:
            noise = torch.randn_like(x0)
        signal, sigma = self.signal_noise(t, x0)
        return signal * x0 + sigma * noise

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Invert the forward process given predicted noise."""
        signal, sigma = self.signal_noise(t, x_t)
        return (x_t - sigma * eps) / signal

    def posterior_mean_variance(
        self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, s: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of ``q(x_s | x_t, x_0)`` for ``s < t`` (default ``s = t - 1``)."""
        t = torch.as_tensor(t, dtype=torch.long)
        s = t - 1 if s is None else torch.as_tensor(s, dtype=torch.long).expand_as(t)
        log_ab_t = self._log_ab(t).unsqueeze(-1)
        log_ab_s = self._log_ab(s).unsqueeze(-1)
        one_minus_ab_t = -torch.expm1(log_ab_t)
        one_minus_ab_s = -torch.expm1(log_ab_s)
        beta_ts = -torch.expm1(log_ab_t - log_ab_s)
        coef_x0 = (0.5 * log_ab_s).exp() * beta_ts / one_minus_ab_t
        coef_xt = (0.5 * (log_ab_t - log_ab_s)).exp() * one_minus_ab_s / one_minus_ab_t
        variance = beta_ts * one_minus_ab_s / one_minus_ab_t
        dtype = x_t.dtype
        mean = coef_x0.to(dtype) * x0 + coef_xt.to(dtype) * x_t
        return mean, variance.to(dtype).expand_as(x_t)

    def sample_timesteps(
        self, n: int, high: int | None = None, device=None, cells_per_timestep: int = 1
    ) -> torch.Tensor:
        """Uniform training timesteps in ``[0, high)`` (default ``high = T``) for ``n`` cells.

        With ``cells_per_timestep > 1`` the timesteps are stratified: ``[0, high)`` is cut into
        ``k = ceil(n / cells_per_timestep)`` equal strata, one timestep is drawn uniformly in
        each, and each is given to ``n / k`` cells picked at random. Every cell's timestep is
        still uniform on ``[0, high)``, so the training loss keeps its expectation; its variance
        over timesteps is lower than with independent draws (every stratum is in every
        minibatch), and the networks compute their time embeddings once per distinct timestep.
        """
        high = self.n_timesteps if high is None else high
        if cells_per_timestep <= 1:
            return torch.randint(0, high, (n,), device=device)
        k = math.ceil(n / cells_per_timestep)
        offsets = torch.rand(k, device=device, dtype=torch.float64)
        strata = torch.arange(k, device=device, dtype=torch.float64)
        times = ((strata + offsets) * (high / k)).long().clamp_(max=high - 1)
        return times[torch.randperm(n, device=device) % k]

    def sampling_timesteps(
        self,
        n_steps: int,
        start_time: int | None = None,
        spacing: Literal["uniform", "log_snr"] = "uniform",
    ) -> list[int]:
        """Descending timesteps for a sampler with ``n_steps`` steps.

        ``start_time`` (default ``T - 1``) is the first timestep: it starts a sampler from a
        partially noised input, as Gradient Interpolation does. ``spacing="uniform"`` spaces
        the timesteps evenly; ``"log_snr"`` spaces them evenly in ``lambda`` (half the log
        signal-to-noise ratio), which the multistep solver needs: with even timesteps, its
        last steps would span most of the change in ``lambda`` and extrapolate poorly.
        """
        start = self.n_timesteps - 1 if start_time is None else int(start_time)
        if not 0 <= start < self.n_timesteps:
            raise ValueError(
                f"`start_time` must be in [0, {self.n_timesteps - 1}], got {start_time}."
            )
        if spacing not in SPACINGS:
            raise ValueError(f"Unknown spacing {spacing!r}; choose one of {list(SPACINGS)}.")
        n_steps = int(min(n_steps, start + 1))
        if spacing == "uniform":
            steps = np.round(np.linspace(0, start, n_steps)).astype(int)
        else:
            # lambda decreases with t: find, for each target, the timestep closest below it
            lam = self.half_log_snr(torch.arange(start + 1)).cpu().numpy()
            targets = np.linspace(lam[start], lam[0], n_steps)
            steps = np.clip(np.searchsorted(-lam, -targets), 0, start)
        return np.unique(steps)[::-1].tolist()
