"""Noise schedule, samplers and classifier guidance for latent diffusion.

The schedule, the samplers and the guidance are kept apart (as in diffusers): a sampler only
needs a function that predicts noise and, optionally, a function that returns the gradient of
the guidance log-probability. Timesteps are always indices into the full training schedule
``0 .. n_timesteps - 1``, so a sampler with fewer steps walks a sub-sequence of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
from torch import nn

EpsilonFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
GuidanceFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor | None]

SAMPLERS = ("dpmpp_2m", "ddim", "ddpm")
SPACINGS = ("uniform", "log_snr")
SAMPLER_SPACING = {"dpmpp_2m": "log_snr", "ddim": "uniform", "ddpm": "uniform"}
"""Timestep spacing each sampler is run with."""


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
    timesteps = list(timesteps)
    for i, t in enumerate(timesteps):
        s = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        t_vec = _timestep_tensor(t, x.shape[0], x.device)
        with torch.no_grad():
            eps = epsilon_fn(x, t_vec)
            x0 = schedule.predict_x0(x, t_vec, eps)
            mean, variance = schedule.posterior_mean_variance(x0, x, t_vec, s)
        grad = guidance_fn(x, t_vec) if guidance_fn is not None else None
        if grad is not None:
            mean = mean + variance * grad
        x = mean + variance.sqrt() * torch.randn_like(x) if s >= 0 else mean
        if callback is not None:
            callback()
    return x


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
    timesteps = list(timesteps)
    for i, t in enumerate(timesteps):
        s = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        t_vec = _timestep_tensor(t, x.shape[0], x.device)
        signal_s, sigma_s = schedule.signal_noise(_timestep_tensor(s, x.shape[0], x.device), x)
        eps, x0 = _guided_prediction(epsilon_fn, schedule, x, t_vec, guidance_fn)
        x = signal_s * x0 + sigma_s * eps
        if callback is not None:
            callback()
    return x


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
    timesteps = list(timesteps)
    previous_x0 = previous_h = None
    for i, t in enumerate(timesteps):
        s = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        t_vec = _timestep_tensor(t, x.shape[0], x.device)
        _, x0 = _guided_prediction(epsilon_fn, schedule, x, t_vec, guidance_fn)
        if s < 0:
            x = x0
        else:
            h = float(schedule.half_log_snr(s) - schedule.half_log_snr(t))
            signal_s, sigma_s = schedule.signal_noise(torch.tensor([s]), x)
            data = x0
            if previous_x0 is not None:
                half_inverse_ratio = 0.5 * h / previous_h
                data = (1.0 + half_inverse_ratio) * x0 - half_inverse_ratio * previous_x0
            sigma_t = schedule.signal_noise(t_vec[:1], x)[1]
            x = (sigma_s / sigma_t) * x - signal_s * math.expm1(-h) * data
            previous_x0, previous_h = x0, h
        if callback is not None:
            callback()
    return x


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
    samplers = {"dpmpp_2m": dpmpp_2m_sample, "ddim": ddim_sample, "ddpm": ddpm_sample}
    if sampler not in samplers:
        raise ValueError(f"Unknown sampler {sampler!r}; choose one of {list(samplers)}.")
    return samplers[sampler](epsilon_fn, schedule, x, timesteps, guidance_fn, callback)


class ClassifierGuidance:
    """Gradient of a weighted sum of classifier log-probabilities.

    For each condition ``k`` with classifier ``f_k``, target weights ``W_k`` (one row per cell:
    one-hot for a requested class, ``(1 - w, w)`` over two classes for Gradient Interpolation)
    and scale ``s_k``, returns ``sum_k s_k * grad_x sum_c W_kc log p_k(c | x_t, t)``.
    Classifiers were trained on ``t < horizon`` only, so no guidance is given above it.

    Parameters
    ----------
    classifiers
        One classifier per condition, called as ``f(x_t, t) -> logits``.
    target_weights
        One ``(n_cells, n_classes)`` weight matrix per classifier.
    scales
        One guidance scale per classifier.
    horizon
        Guidance is applied for ``t < horizon``.
    """

    def __init__(
        self,
        classifiers: Sequence[nn.Module],
        target_weights: Sequence[torch.Tensor],
        scales: Sequence[float],
        horizon: int,
    ):
        self.terms = [
            (clf, w, float(s))
            for clf, w, s in zip(classifiers, target_weights, scales, strict=True)
            if float(s) != 0.0
        ]
        self.horizon = horizon

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor | None:
        if not self.terms or int(t[0]) >= self.horizon:
            return None
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            objective = x_in.new_zeros(())
            for clf, weights, scale in self.terms:
                log_probs = torch.log_softmax(clf(x_in, t), dim=-1)
                objective = objective + scale * (weights * log_probs).sum()
            (grad,) = torch.autograd.grad(objective, x_in)
        return grad


class ClassifierFreeGuidance:
    """Compositional classifier-free guidance: a noise prediction from a conditional denoiser.

    With ``eps(x, t, labels)`` a denoiser trained with each condition randomly replaced by a
    null label (Ho & Salimans, 2022), the guided prediction is

    ``eps_null + sum_k s_k * (sum_c W_kc eps(x, t, y_k = c) - eps_null)``

    where ``eps_null`` gives no condition and ``eps(x, t, y_k = c)`` gives condition ``k`` only
    (compositional guidance, Liu et al., 2022; used by CFGen). With one-hot ``W_k`` and
    ``s_k = 1`` for a single condition this is the plain conditional prediction; larger scales
    sharpen the conditions; ``(1 - w, w)`` weights over two classes interpolate the conditional
    predictions (Gradient Interpolation). All predictions of a step run as one batch.

    Parameters
    ----------
    denoiser
        Called as ``denoiser(x_t, t, labels) -> eps``; ``labels`` is ``(n, n_conditions)``.
    null_labels
        The null label of each condition, ``(n_conditions,)``.
    target_weights
        One ``(n_cells, n_classes)`` weight matrix per condition (rows sum to 1, at most two
        non-zero entries), or None for a condition that is not guided.
    scales
        One guidance scale per condition.
    """

    def __init__(
        self,
        denoiser: Callable[..., torch.Tensor],
        null_labels: torch.Tensor,
        target_weights: Sequence[torch.Tensor | None],
        scales: Sequence[float],
    ):
        self.denoiser = denoiser
        label_sets, coefficients = [], []
        n_cells = None
        for k, (weights, scale) in enumerate(zip(target_weights, scales, strict=True)):
            if weights is None or float(scale) == 0.0:
                continue
            n_cells = weights.shape[0]
            top = weights.topk(min(2, weights.shape[1]), dim=1)
            for values, classes in zip(top.values.T, top.indices.T, strict=True):
                if not bool((values > 0).any()):
                    continue
                labels = null_labels.expand(n_cells, -1).clone()
                labels[:, k] = classes
                label_sets.append(labels)
                coefficients.append(float(scale) * values)
        if label_sets:
            null = null_labels.expand(n_cells, -1)
            null_coefficient = 1.0 - torch.stack(coefficients).sum(0)
            self.labels = torch.cat([null, *label_sets])
            self.coefficients = torch.stack([null_coefficient, *coefficients]).unsqueeze(-1)
        else:
            self.labels = None
            self.coefficients = None

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.labels is None:
            return self.denoiser(x, t)
        n_passes = self.coefficients.shape[0]
        eps = self.denoiser(x.repeat(n_passes, 1), t.repeat(n_passes), self.labels)
        return (eps.view(n_passes, *x.shape) * self.coefficients).sum(0)
