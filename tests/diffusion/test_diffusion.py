"""Noise schedule, samplers and guidance against closed forms."""

import itertools

import numpy as np
import pytest
import torch

from scvi_diffusion.diffusion import (
    ClassifierGuidance,
    LinearNoiseSchedule,
    ddim_sample,
    ddpm_sample,
    dpmpp_2m_sample,
    run_sampler,
)


@pytest.fixture
def schedule():
    return LinearNoiseSchedule(1000, 1e-4, 0.02)


def test_schedule_matches_paper_closed_form(schedule):
    betas = np.linspace(1e-4, 0.02, 1000)
    alpha_bar = np.cumprod(1 - betas)
    np.testing.assert_allclose(schedule.betas.numpy(), betas, rtol=1e-6)
    np.testing.assert_allclose(schedule.alphas_cumprod.numpy(), alpha_bar, rtol=1e-5)
    assert schedule.alpha_bar(torch.tensor(-1)).item() == 1.0


def test_q_mean_variance_and_samples(schedule):
    torch.manual_seed(0)
    x0 = torch.full((200_000, 1), 2.0)
    t = torch.full((200_000,), 300)
    ab = float(np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))[300])
    mean, var = schedule.q_mean_variance(x0[:1], t[:1])
    assert mean.item() == pytest.approx(np.sqrt(ab) * 2.0, rel=1e-5)
    assert var.item() == pytest.approx(1 - ab, rel=1e-5)
    xt = schedule.q_sample(x0, t)
    assert xt.mean().item() == pytest.approx(np.sqrt(ab) * 2.0, abs=0.01)
    assert xt.var().item() == pytest.approx(1 - ab, rel=0.02)


@pytest.mark.parametrize("t", [1, 10, 500, 999])
def test_posterior_equals_gaussian_conditioning(schedule, t):
    # joint of (x_{t-1}, x_t) given x0 is Gaussian; condition x_{t-1} on x_t by hand
    betas = np.linspace(1e-4, 0.02, 1000)
    ab = np.cumprod(1 - betas)
    x0, xt = 0.7, -0.3
    ab_s, ab_t = ab[t - 1], ab[t]
    var_s = 1 - ab_s
    cov = np.sqrt(1 - betas[t]) * var_s  # Cov(x_{t-1}, x_t | x0)
    var_t = 1 - ab_t
    mean_expected = np.sqrt(ab_s) * x0 + cov / var_t * (xt - np.sqrt(ab_t) * x0)
    var_expected = var_s - cov**2 / var_t
    mean, var = schedule.posterior_mean_variance(
        torch.tensor([[x0]]), torch.tensor([[xt]]), torch.tensor([t])
    )
    assert mean.item() == pytest.approx(mean_expected, rel=1e-4, abs=1e-6)
    assert var.item() == pytest.approx(var_expected, rel=1e-3, abs=1e-8)
    # the classic beta-tilde form
    assert var.item() == pytest.approx((1 - ab_s) / (1 - ab_t) * betas[t], rel=1e-3, abs=1e-8)


def test_sampling_timesteps(schedule):
    steps = schedule.sampling_timesteps(50)
    assert len(steps) == 50 and steps[0] == 999 and steps[-1] == 0
    assert all(a > b for a, b in itertools.pairwise(steps))
    assert len(schedule.sampling_timesteps(1000)) == 1000
    partial = schedule.sampling_timesteps(50, start_time=600)
    assert partial[0] == 600 and partial[-1] == 0
    with pytest.raises(ValueError, match="start_time"):
        schedule.sampling_timesteps(10, start_time=1000)


@pytest.mark.parametrize("start_time", [None, 600])
def test_log_snr_spacing_is_even_in_lambda(schedule, start_time):
    steps = schedule.sampling_timesteps(12, start_time=start_time, spacing="log_snr")
    start = 999 if start_time is None else start_time
    assert steps[0] == start and steps[-1] == 0 and len(steps) == 12
    assert all(a > b for a, b in itertools.pairwise(steps))
    gaps = np.diff(schedule.half_log_snr(torch.tensor(steps)).numpy())
    # even up to the rounding of timesteps to integers (lambda changes fastest near t = 0)
    assert gaps.min() > 0 and gaps.max() < 2.5 * np.median(gaps)
    uniform_gaps = np.diff(schedule.half_log_snr(torch.tensor(schedule.sampling_timesteps(12))))
    assert uniform_gaps.max() > 5 * np.median(uniform_gaps)
    with pytest.raises(ValueError, match="spacing"):
        schedule.sampling_timesteps(12, spacing="cosine")


def test_half_log_snr(schedule):
    t = torch.tensor([0, 500, 999])
    ab = schedule.alpha_bar(t).double()
    torch.testing.assert_close(
        schedule.half_log_snr(t), 0.5 * torch.log(ab / (1 - ab)), rtol=1e-3, atol=1e-4
    )
    assert torch.isinf(schedule.half_log_snr(-1))


def gaussian_eps(schedule, mu, sigma):
    """Exact noise predictor for data ~ N(mu, sigma^2)."""

    def eps(x, t):
        ab = schedule.alpha_bar(t).unsqueeze(-1)
        return (1 - ab).sqrt() * (x - ab.sqrt() * mu) / (ab * sigma**2 + 1 - ab)

    return eps


@pytest.mark.parametrize(
    ("sampler", "n_steps", "spacing"),
    [
        (ddim_sample, 50, "uniform"),
        (ddpm_sample, 1000, "uniform"),
        (dpmpp_2m_sample, 15, "log_snr"),
    ],
)
def test_samplers_recover_gaussian_data(schedule, sampler, n_steps, spacing):
    torch.manual_seed(0)
    mu, sigma = 1.5, 0.5
    x = torch.randn(20_000, 1)
    steps = schedule.sampling_timesteps(n_steps, spacing=spacing)
    samples = sampler(gaussian_eps(schedule, mu, sigma), schedule, x, steps)
    assert samples.mean().item() == pytest.approx(mu, abs=0.03)
    assert samples.std().item() == pytest.approx(sigma, abs=0.03)


class LinearClassifier(torch.nn.Module):
    def __init__(self, weight):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.as_tensor(weight, dtype=torch.float32))

    def forward(self, x, t):
        return x @ self.weight.T


def test_guidance_gradient_is_analytic():
    weight = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, 1.0]])
    clf = LinearClassifier(weight)
    x = torch.tensor([[0.3, -0.2], [1.0, 0.5]])
    target = torch.tensor([[0.0, 1.0, 0.0], [0.25, 0.0, 0.75]])
    guidance = ClassifierGuidance([clf], [target], [3.0], horizon=500)
    grad = guidance(x, torch.tensor([10, 10]))
    probs = torch.softmax(x @ weight.T, -1)
    expected = 3.0 * (target @ weight - target.sum(-1, keepdim=True) * (probs @ weight))
    torch.testing.assert_close(grad, expected)
    assert guidance(x, torch.tensor([500, 500])) is None  # above the horizon
    assert ClassifierGuidance([clf], [target], [0.0], horizon=500)(x, torch.tensor([1, 1])) is None


def test_second_order_solver_beats_ddim_at_few_steps(schedule):
    # same network evaluations: DPM-Solver++(2M) on log-SNR spacing is far closer to the data
    mu, sigma = 1.5, 0.5
    errors = {}
    for name, sampler, spacing in [
        ("ddim", ddim_sample, "uniform"),
        ("dpmpp_2m", dpmpp_2m_sample, "log_snr"),
    ]:
        torch.manual_seed(0)
        steps = schedule.sampling_timesteps(10, spacing=spacing)
        out = sampler(gaussian_eps(schedule, mu, sigma), schedule, torch.randn(20_000, 1), steps)
        errors[name] = abs(out.std().item() - sigma)
    assert errors["dpmpp_2m"] < 0.03
    assert errors["dpmpp_2m"] < errors["ddim"] / 3


@pytest.mark.parametrize("sampler", ["dpmpp_2m", "ddim", "ddpm"])
def test_guidance_moves_samples_toward_requested_class(schedule, sampler):
    # data N(0, 1); class 1 is "x > 0", class 0 is "x < 0"
    clf = LinearClassifier([[-4.0], [4.0]])
    eps = gaussian_eps(schedule, 0.0, 1.0)
    steps = schedule.sampling_timesteps(100)
    results = {}
    for target in (0, 1):
        torch.manual_seed(0)
        weights = torch.zeros(5000, 2)
        weights[:, target] = 1.0
        guidance = ClassifierGuidance([clf], [weights], [2.0], horizon=1000)
        results[target] = run_sampler(
            sampler, eps, schedule, torch.randn(5000, 1), steps, guidance
        )
    torch.manual_seed(0)
    unguided = run_sampler(sampler, eps, schedule, torch.randn(5000, 1), steps)
    assert (results[1] > 0).float().mean() > 0.9
    assert (results[0] < 0).float().mean() > 0.9
    assert abs((unguided > 0).float().mean().item() - 0.5) < 0.05
