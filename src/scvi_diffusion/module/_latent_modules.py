"""The latent stages' modules: the denoiser (DDPM on standardised latents) and the guidance
classifiers on noisy latents."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from scvi import REGISTRY_KEYS
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data

from .._constants import VALUE_SPREAD_SIDES, value_spread_key
from ..diffusion import LinearNoiseSchedule
from ._networks import NoisyLatentClassifier, SkipMLPDenoiser

CELLS_PER_TIMESTEP = 8
"""Cells of a training minibatch that share a (stratified) timestep: the time embeddings, most
of a step's work, are computed once per distinct timestep."""


class LatentDiffusionModule(BaseModuleClass):
    """DDPM on standardised latents with epsilon prediction.

    Its data are standardised latents under ``REGISTRY_KEYS.X_KEY``. The per-dimension location
    and scale used to standardise them are buffers, so they are saved with the weights.

    Parameters
    ----------
    n_latent
        Latent size.
    hidden_dims
        Denoiser widths; see :func:`~scvi_diffusion.module._networks.default_hidden_dims`.
    n_timesteps, beta_start, beta_end
        Linear noise schedule.
    dropout_rate
        Denoiser dropout.
    n_classes
        For classifier-free guidance: categories of each condition the denoiser is conditioned
        on. Empty: an unconditional denoiser.
    condition_registry_keys
        Registry key holding each condition's codes, in the order of ``n_classes``.
    condition_dropout
        Probability with which each condition is replaced by its null label in training, so
        the denoiser also learns every partly and fully unconditional prediction.
    value_registry_keys
        Registry keys of the continuous conditions' standardised values, which the denoiser
        takes after the categorical labels (NaN, their null, when dropped). Where the
        training data also hold each value's jitter (registry keys :func:`value_spread_key`
        of these), training moves the values by it, so the denoiser learns the values
        between the measured ones.
    """

    def __init__(
        self,
        n_latent: int,
        hidden_dims: Sequence[int] | None = None,
        n_timesteps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        dropout_rate: float = 0.0,
        n_classes: Sequence[int] = (),
        condition_registry_keys: Sequence[str] = (),
        condition_dropout: float = 0.25,
        value_registry_keys: Sequence[str] = (),
    ):
        super().__init__()
        if len(n_classes) != len(condition_registry_keys):
            raise ValueError("Give one registry key per conditioned condition.")
        if not 0.0 <= condition_dropout <= 1.0:
            raise ValueError(f"`condition_dropout` must be in [0, 1], got {condition_dropout!r}.")
        self.schedule = LinearNoiseSchedule(n_timesteps, beta_start, beta_end)
        self.denoiser = SkipMLPDenoiser(
            n_latent, hidden_dims, dropout_rate, n_classes, n_values=len(value_registry_keys)
        )
        self.condition_registry_keys = list(condition_registry_keys)
        self.value_registry_keys = list(value_registry_keys)
        self.condition_dropout = condition_dropout
        self.register_buffer("latent_loc", torch.zeros(n_latent))
        self.register_buffer("latent_scale", torch.ones(n_latent))

    def set_standardization(self, latents: torch.Tensor) -> None:
        """Set the per-dimension location and scale from training latents."""
        self.latent_loc.copy_(latents.mean(0))
        self.latent_scale.copy_(latents.std(0).clamp_min(1e-6))

    def standardize(self, z: torch.Tensor) -> torch.Tensor:
        """Map VAE latents to the diffusion space."""
        return (z - self.latent_loc) / self.latent_scale

    def unstandardize(self, x: torch.Tensor) -> torch.Tensor:
        """Map diffusion-space latents back to VAE latents."""
        return x * self.latent_scale + self.latent_loc

    @property
    def is_conditional(self) -> bool:
        """Whether the denoiser takes conditions (classifier-free guidance)."""
        return bool(self.condition_registry_keys or self.value_registry_keys)

    def _get_inference_input(self, tensors, **kwargs):
        labels = None
        if self.is_conditional:
            columns = [tensors[key].long().view(-1, 1) for key in self.condition_registry_keys]
            if self.value_registry_keys:
                # one float row per cell: category codes (exact as floats), then values
                columns = [c.float() for c in columns] + [
                    tensors[key].float().view(-1, 1) for key in self.value_registry_keys
                ]
            labels = torch.cat(columns, dim=1)
        spread_keys = [
            value_spread_key(key, side)
            for side in VALUE_SPREAD_SIDES
            for key in self.value_registry_keys
        ]
        spreads = None
        if spread_keys and all(key in tensors for key in spread_keys):
            # (cells, 2 * values): the jitter's sd below each value, then above
            spreads = torch.cat([tensors[key].float().view(-1, 1) for key in spread_keys], dim=1)
        return {"x0": tensors[REGISTRY_KEYS.X_KEY], "labels": labels, "value_spreads": spreads}

    @auto_move_data
    def inference(
        self,
        x0: torch.Tensor,
        labels: torch.Tensor | None = None,
        value_spreads: torch.Tensor | None = None,
    ):
        """Noise clean latents at uniformly drawn timesteps; in training, jitter the values
        (``value_spreads``: each cell's sd below, then above, each value) and drop conditions."""
        t = self.schedule.sample_timesteps(
            x0.shape[0], device=x0.device, cells_per_timestep=CELLS_PER_TIMESTEP
        )
        noise = torch.randn_like(x0)
        if labels is not None and self.training and value_spreads is not None:
            labels = with_jittered_values(labels, value_spreads)
        if labels is not None and self.training and self.condition_dropout > 0:
            # each condition is dropped on its own, so every subset of conditions is learned,
            # which compositional guidance needs
            dropped = torch.rand(labels.shape, device=labels.device) < self.condition_dropout
            labels = torch.where(dropped, self.denoiser.null_labels.expand_as(labels), labels)
        return {
            "x_t": self.schedule.q_sample(x0, t, noise),
            "t": t,
            "noise": noise,
            "labels": labels,
        }

    def _get_generative_input(self, tensors, inference_outputs, **kwargs):
        return {
            "x_t": inference_outputs["x_t"],
            "t": inference_outputs["t"],
            "labels": inference_outputs["labels"],
        }

    @auto_move_data
    def generative(self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None):
        """Predict the noise."""
        return {"eps": self.denoiser(x_t, t, labels)}

    def loss(self, tensors, inference_outputs, generative_outputs, **kwargs) -> LossOutput:
        """Mean squared error of the predicted noise."""
        mse = F.mse_loss(generative_outputs["eps"], inference_outputs["noise"])
        return LossOutput(loss=mse, n_obs_minibatch=inference_outputs["noise"].shape[0])

    @torch.no_grad()
    def per_cell_loss(
        self,
        x0: torch.Tensor,
        labels: torch.Tensor | None,
        timesteps: Sequence[int],
        n_draws: int,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """Each cell's noise-prediction error under its own ``labels``: the squared error per
        latent dimension, averaged over ``n_draws`` noises at each of ``timesteps``.

        The noises come from ``generator`` (on the CPU), so two calls with generators seeded
        alike score a cell alike whatever else is in the batch.
        """
        total = torch.zeros(x0.shape[0], device=x0.device)
        for step in timesteps:
            t = torch.full((x0.shape[0],), int(step), device=x0.device, dtype=torch.long)
            for _ in range(n_draws):
                noise = torch.randn(x0.shape, generator=generator).to(x0.device)
                eps = self.denoiser(self.schedule.q_sample(x0, t, noise), t, labels)
                total += (eps - noise).pow(2).mean(dim=1)
        return total / (len(timesteps) * n_draws)


def with_jittered_values(labels: torch.Tensor, spreads: torch.Tensor) -> torch.Tensor:
    """``labels`` whose last ``k`` columns (values) moved by a split-normal jitter: with
    probability 1/2 up by a half-normal draw of sd ``spreads[:, k + j]``, otherwise down by
    one of sd ``spreads[:, j]`` (see :func:`~scvi_diffusion.conditions.vicinal_spreads`)."""
    k = spreads.shape[1] // 2
    values = labels[:, -k:]
    up = torch.rand_like(values) < 0.5
    sd = torch.where(up, spreads[:, k:], -spreads[:, :k])
    moved = values + sd * torch.randn_like(values).abs()
    return torch.cat([labels[:, :-k], moved], dim=1)


class ConditionClassifiersModule(BaseModuleClass):
    """One noisy-latent classifier per registered condition, for classifier guidance.

    Each classifier is trained on ``x_t ~ q(x_t | x_0)`` with ``t < horizon``.

    Parameters
    ----------
    n_latent
        Latent size.
    n_classes
        Number of categories of each condition.
    registry_keys
        Registry key holding each condition's codes, in the order of ``n_classes``.
    horizon
        Classifiers see timesteps in ``[0, horizon)``.
    hidden_dims
        Widths of each classifier.
    n_timesteps, beta_start, beta_end
        Linear noise schedule (the diffusion's).
    """

    def __init__(
        self,
        n_latent: int,
        n_classes: Sequence[int],
        registry_keys: Sequence[str],
        horizon: int = 500,
        hidden_dims: Sequence[int] = (256, 128, 64),
        n_timesteps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
    ):
        super().__init__()
        if not 0 < horizon <= n_timesteps:
            raise ValueError(f"`guidance_horizon` must be in [1, {n_timesteps}], got {horizon}.")
        self.registry_keys = list(registry_keys)
        self.horizon = horizon
        self.schedule = LinearNoiseSchedule(n_timesteps, beta_start, beta_end)
        self.classifiers = torch.nn.ModuleList(
            [NoisyLatentClassifier(n_latent, k, hidden_dims) for k in n_classes]
        )

    def _get_inference_input(self, tensors, **kwargs):
        return {"x0": tensors[REGISTRY_KEYS.X_KEY]}

    @auto_move_data
    def inference(self, x0: torch.Tensor):
        """Noise clean latents at timesteps below the horizon."""
        t = self.schedule.sample_timesteps(
            x0.shape[0], high=self.horizon, device=x0.device, cells_per_timestep=CELLS_PER_TIMESTEP
        )
        return {"x_t": self.schedule.q_sample(x0, t), "t": t}

    def _get_generative_input(self, tensors, inference_outputs, **kwargs):
        return {"x_t": inference_outputs["x_t"], "t": inference_outputs["t"]}

    @auto_move_data
    def generative(self, x_t: torch.Tensor, t: torch.Tensor):
        """Logits of every condition."""
        return {"logits": [clf(x_t, t) for clf in self.classifiers]}

    def loss(self, tensors, inference_outputs, generative_outputs, **kwargs) -> LossOutput:
        """Sum of the conditions' cross-entropies; accuracies as extra metrics."""
        total = 0.0
        metrics = {}
        for key, logits in zip(self.registry_keys, generative_outputs["logits"], strict=True):
            labels = tensors[key].long().view(-1).to(logits.device)
            total = total + F.cross_entropy(logits, labels)
            metrics[f"accuracy_{key}"] = (logits.argmax(-1) == labels).float().mean()
        return LossOutput(
            loss=total, n_obs_minibatch=inference_outputs["t"].shape[0], extra_metrics=metrics
        )
