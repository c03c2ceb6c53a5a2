"""Torch modules: the composite ScDiffusion module and its trainable stages."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from scvi import REGISTRY_KEYS
from scvi.module import VAE
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data

from ._components import NoisyLatentClassifier, SkipMLPDenoiser
from ._diffusion import LinearNoiseSchedule


class LatentDiffusionModule(BaseModuleClass):
    """DDPM on standardised latents with epsilon prediction.

    Its data are standardised latents under ``REGISTRY_KEYS.X_KEY``. The per-dimension location
    and scale used to standardise them are buffers, so they are saved with the weights.

    Parameters
    ----------
    n_latent
        Latent size.
    hidden_dims
        Denoiser widths; see :func:`~scvi_diffusion._components.default_hidden_dims`.
    n_timesteps, beta_start, beta_end
        Linear noise schedule.
    dropout_rate
        Denoiser dropout.
    """

    def __init__(
        self,
        n_latent: int,
        hidden_dims: Sequence[int] | None = None,
        n_timesteps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        dropout_rate: float = 0.0,
    ):
        super().__init__()
        self.schedule = LinearNoiseSchedule(n_timesteps, beta_start, beta_end)
        self.denoiser = SkipMLPDenoiser(n_latent, hidden_dims, dropout_rate)
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

    def _get_inference_input(self, tensors, **kwargs):
        return {"x0": tensors[REGISTRY_KEYS.X_KEY]}

    @auto_move_data
    def inference(self, x0: torch.Tensor):
        """Noise clean latents at uniformly drawn timesteps."""
        t = self.schedule.sample_timesteps(x0.shape[0], device=x0.device)
        noise = torch.randn_like(x0)
        return {"x_t": self.schedule.q_sample(x0, t, noise), "t": t, "noise": noise}

    def _get_generative_input(self, tensors, inference_outputs, **kwargs):
        return {"x_t": inference_outputs["x_t"], "t": inference_outputs["t"]}

    @auto_move_data
    def generative(self, x_t: torch.Tensor, t: torch.Tensor):
        """Predict the noise."""
        return {"eps": self.denoiser(x_t, t)}

    def loss(self, tensors, inference_outputs, generative_outputs, **kwargs) -> LossOutput:
        """Mean squared error of the predicted noise."""
        mse = F.mse_loss(generative_outputs["eps"], inference_outputs["noise"])
        return LossOutput(loss=mse, n_obs_minibatch=inference_outputs["noise"].shape[0])


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
        t = self.schedule.sample_timesteps(x0.shape[0], high=self.horizon, device=x0.device)
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


class ScDiffusionModule(BaseModuleClass):
    """Composite module: scVI's VAE, the latent diffusion, and the guidance classifiers.

    Holding all three in one module keeps scvi-tools' save/load to a single state dict. The
    module's own ``inference``/``generative``/``loss`` are the VAE's, so scvi-tools utilities
    that expect a VAE (latent representation, ELBO) work on it.

    Parameters
    ----------
    n_input
        Number of genes.
    n_batch
        Number of batches (1 without a batch key).
    n_classes
        Categories per condition.
    condition_registry_keys
        Registry keys of the conditions.
    n_latent, n_hidden, n_layers, dropout_rate
        VAE architecture (negative binomial likelihood).
    denoiser_hidden_dims
        Widths of the denoiser.
    classifier_hidden_dims
        Widths of each guidance classifier.
    guidance_horizon
        Guidance classifiers are trained and applied for ``t < guidance_horizon``.
    n_timesteps, beta_start, beta_end
        Linear noise schedule.
    """

    def __init__(
        self,
        n_input: int,
        n_batch: int,
        n_classes: Sequence[int],
        condition_registry_keys: Sequence[str],
        n_latent: int = 10,
        n_hidden: int = 128,
        n_layers: int = 1,
        dropout_rate: float = 0.1,
        denoiser_hidden_dims: Sequence[int] | None = None,
        classifier_hidden_dims: Sequence[int] = (256, 128, 64),
        guidance_horizon: int = 500,
        n_timesteps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
    ):
        super().__init__()
        self.n_latent = n_latent
        self.vae = VAE(
            n_input=n_input,
            n_batch=n_batch,
            n_hidden=n_hidden,
            n_latent=n_latent,
            n_layers=n_layers,
            dropout_rate=dropout_rate,
            gene_likelihood="nb",
        )
        self.diffusion = LatentDiffusionModule(
            n_latent, denoiser_hidden_dims, n_timesteps, beta_start, beta_end
        )
        self.guidance = ConditionClassifiersModule(
            n_latent,
            n_classes,
            condition_registry_keys,
            guidance_horizon,
            classifier_hidden_dims,
            n_timesteps,
            beta_start,
            beta_end,
        )

    @property
    def schedule(self) -> LinearNoiseSchedule:
        """The noise schedule of the diffusion."""
        return self.diffusion.schedule

    def _get_inference_input(self, tensors, **kwargs):
        return self.vae._get_inference_input(tensors, **kwargs)

    def _get_generative_input(self, tensors, inference_outputs, **kwargs):
        return self.vae._get_generative_input(tensors, inference_outputs, **kwargs)

    def inference(self, *args, **kwargs):
        """The VAE's inference."""
        return self.vae.inference(*args, **kwargs)

    def generative(self, *args, **kwargs):
        """The VAE's generative process."""
        return self.vae.generative(*args, **kwargs)

    def loss(self, *args, **kwargs) -> LossOutput:
        """The VAE's loss."""
        return self.vae.loss(*args, **kwargs)

    @torch.inference_mode()
    def decode(self, z: torch.Tensor, library: torch.Tensor, batch_index: torch.Tensor):
        """Negative binomial of counts given VAE latents, library sizes and batch indices."""
        outputs = self.vae.generative(
            z=z,
            library=torch.log(library).unsqueeze(-1),
            batch_index=batch_index.view(-1, 1),
            y=torch.zeros_like(batch_index).view(-1, 1),
        )
        return outputs["px"]
