"""The composite ScDiffusion module: the autoencoder, the latent denoiser and guidance."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from scvi.distributions import ZeroInflatedNegativeBinomial
from scvi.module import VAE
from scvi.module.base import BaseModuleClass, LossOutput
from torch.distributions import Distribution, Poisson

from .._constants import AUTOENCODERS, GUIDANCE_MODES, NORMALIZED_TARGET_SUM
from ..diffusion import LinearNoiseSchedule
from ._latent_modules import ConditionClassifiersModule, LatentDiffusionModule
from ._mlp_autoencoder import MLPAutoencoder


class ScDiffusionModule(BaseModuleClass):
    """Composite module: the autoencoder, the latent diffusion, and the guidance classifiers.

    Holding all three in one module keeps scvi-tools' save/load to a single state dict. The
    module's own ``inference``/``generative``/``loss`` are the autoencoder's, so scvi-tools
    utilities that expect a VAE (latent representation, ELBO) work on it.

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
    autoencoder
        ``"scvi"``: scVI's VAE on counts. ``"mlp"``: the
        paper's deterministic :class:`MLPAutoencoder` (batches are ignored).
    n_latent, n_hidden, n_layers, dropout_rate, gene_likelihood, dispersion
        Latent size; the scVI VAE's architecture and likelihood (unused by ``"mlp"``).
    denoiser_hidden_dims
        Widths of the denoiser.
    classifier_hidden_dims
        Widths of each guidance classifier.
    guidance_horizon
        Guidance classifiers are trained and applied for ``t < guidance_horizon``.
    n_timesteps, beta_start, beta_end
        Linear noise schedule.
    guidance
        ``"classifier"``: an unconditional denoiser and one noisy-latent classifier per
        condition. ``"classifier_free"``: a denoiser that takes the conditions' labels, and no
        classifiers.
    condition_dropout
        Probability of dropping each condition in training (``"classifier_free"`` only).
    autoencoder_kwargs
        Further keyword arguments of scVI's :class:`~scvi.module.VAE` (``"scvi"`` only), for
        example those of a pretrained scVI model.
    value_registry_keys
        Registry keys of the continuous conditions (standardised values), which the denoiser
        takes after the categorical labels (``"classifier_free"`` only).
    """

    def __init__(
        self,
        n_input: int,
        n_batch: int,
        n_classes: Sequence[int],
        condition_registry_keys: Sequence[str],
        autoencoder: str = "scvi",
        n_latent: int = 10,
        n_hidden: int = 128,
        n_layers: int = 1,
        dropout_rate: float = 0.1,
        gene_likelihood: str = "nb",
        dispersion: str = "gene",
        denoiser_hidden_dims: Sequence[int] | None = None,
        classifier_hidden_dims: Sequence[int] = (256, 128, 64),
        guidance_horizon: int = 500,
        n_timesteps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        guidance: str = "classifier",
        condition_dropout: float = 0.25,
        autoencoder_kwargs: dict | None = None,
        value_registry_keys: Sequence[str] = (),
    ):
        super().__init__()
        _check_choice("guidance", guidance, GUIDANCE_MODES)
        self.guidance_mode = guidance
        _check_choice("autoencoder", autoencoder, AUTOENCODERS)
        self.n_latent = n_latent
        self.autoencoder_kind = autoencoder
        self.autoencoder = _autoencoder(
            autoencoder,
            n_input=n_input,
            n_batch=n_batch,
            n_latent=n_latent,
            n_hidden=n_hidden,
            n_layers=n_layers,
            dropout_rate=dropout_rate,
            gene_likelihood=gene_likelihood,
            dispersion=dispersion,
            autoencoder_kwargs=autoencoder_kwargs,
        )
        self.diffusion, self.guidance = _latent_modules(
            guidance,
            n_latent=n_latent,
            n_classes=n_classes,
            condition_registry_keys=condition_registry_keys,
            value_registry_keys=value_registry_keys,
            denoiser_hidden_dims=denoiser_hidden_dims,
            condition_dropout=condition_dropout,
            classifier_hidden_dims=classifier_hidden_dims,
            guidance_horizon=guidance_horizon,
            n_timesteps=n_timesteps,
            beta_start=beta_start,
            beta_end=beta_end,
        )

    @property
    def schedule(self) -> LinearNoiseSchedule:
        """The noise schedule of the diffusion."""
        return self.diffusion.schedule

    def _get_inference_input(self, tensors, **kwargs):
        return self.autoencoder._get_inference_input(tensors, **kwargs)

    def _get_generative_input(self, tensors, inference_outputs, **kwargs):
        return self.autoencoder._get_generative_input(tensors, inference_outputs, **kwargs)

    def inference(self, *args, **kwargs):
        """The autoencoder's inference."""
        return self.autoencoder.inference(*args, **kwargs)

    def generative(self, *args, **kwargs):
        """The autoencoder's generative process."""
        return self.autoencoder.generative(*args, **kwargs)

    def loss(self, *args, **kwargs) -> LossOutput:
        """The autoencoder's loss."""
        return self.autoencoder.loss(*args, **kwargs)

    @torch.inference_mode()
    def decode(
        self, z: torch.Tensor, library: torch.Tensor, batch_index: torch.Tensor
    ) -> tuple[Distribution, torch.Tensor]:
        """Count distribution and expected expression fractions (rows sum to 1) of latents.

        scVI's VAE gives its count likelihood. The MLP autoencoder decodes log-normalised
        expression; its counts are Poisson at the cell's library size, since the paper's model
        has no count likelihood.
        """
        if self.autoencoder_kind == "scvi":
            px = self.autoencoder.generative(
                z=z,
                library=torch.log(library).unsqueeze(-1),
                batch_index=batch_index.view(-1, 1),
                y=torch.zeros_like(batch_index).view(-1, 1),
            )["px"]
            if isinstance(px, ZeroInflatedNegativeBinomial):
                return _at_library_size(px)
            return px, px.scale
        # no gene can exceed the whole normalised library; the cap also keeps expm1 finite
        # for latents that guidance pushed far from the data
        log_expression = self.autoencoder.generative(z=z)["log_expression"]
        cap = math.log1p(NORMALIZED_TARGET_SUM)
        expression = torch.expm1(torch.nan_to_num(log_expression, nan=0.0).clamp(0.0, cap))
        fractions = expression / expression.sum(-1, keepdim=True).clamp_min(1e-12)
        return Poisson(fractions * library.unsqueeze(-1)), fractions


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    """A ValueError unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"Unknown {name} {value!r}; choose one of {list(choices)}.")


def _autoencoder(
    kind: str,
    n_input: int,
    n_batch: int,
    n_latent: int,
    n_hidden: int,
    n_layers: int,
    dropout_rate: float,
    gene_likelihood: str,
    dispersion: str,
    autoencoder_kwargs: dict | None,
) -> VAE | MLPAutoencoder:
    """scVI's VAE on counts (``kind="scvi"``), or the paper's MLP autoencoder, which uses
    neither the batches nor the VAE's architecture and likelihood."""
    if kind == "scvi":
        return VAE(
            n_input=n_input,
            n_batch=n_batch,
            n_hidden=n_hidden,
            n_latent=n_latent,
            n_layers=n_layers,
            dropout_rate=dropout_rate,
            gene_likelihood=gene_likelihood,
            dispersion=dispersion,
            **(autoencoder_kwargs or {}),
        )
    return MLPAutoencoder(n_input, n_latent)


def _latent_modules(
    guidance: str,
    n_latent: int,
    n_classes: Sequence[int],
    condition_registry_keys: Sequence[str],
    value_registry_keys: Sequence[str],
    denoiser_hidden_dims: Sequence[int] | None,
    condition_dropout: float,
    classifier_hidden_dims: Sequence[int],
    guidance_horizon: int,
    n_timesteps: int,
    beta_start: float,
    beta_end: float,
) -> tuple[LatentDiffusionModule, ConditionClassifiersModule]:
    """The latent diffusion and the guidance classifiers, built in this order: the conditions
    go to the denoiser with classifier-free guidance, to one classifier each otherwise."""
    classifier_free = guidance == "classifier_free"
    diffusion = LatentDiffusionModule(
        n_latent,
        denoiser_hidden_dims,
        n_timesteps,
        beta_start,
        beta_end,
        n_classes=n_classes if classifier_free else (),
        condition_registry_keys=condition_registry_keys if classifier_free else (),
        condition_dropout=condition_dropout,
        value_registry_keys=value_registry_keys if classifier_free else (),
    )
    # without classifiers in the classifier-free mode; kept for its horizon and schedule,
    # which guidance classifiers trained on demand (unregistered columns) share
    classifiers = ConditionClassifiersModule(
        n_latent,
        () if classifier_free else n_classes,
        () if classifier_free else condition_registry_keys,
        guidance_horizon,
        classifier_hidden_dims,
        n_timesteps,
        beta_start,
        beta_end,
    )
    return diffusion, classifiers


def _at_library_size(
    px: ZeroInflatedNegativeBinomial,
) -> tuple[ZeroInflatedNegativeBinomial, torch.Tensor]:
    """A zero-inflated negative binomial whose expected counts sum to the library size.

    scVI's ZINB spreads the library size over the genes before zero inflation removes counts,
    so its draws fall short of the library by the expected dropped share (a fifth of the
    counts on Smart-seq2 read counts). Dividing the means by the expected kept share restores
    the depth and keeps each gene's share of it and its zero probability.
    """
    kept = px.scale * torch.sigmoid(-px.zi_logits)
    kept_share = kept.sum(-1, keepdim=True).clamp_min(1e-12)
    fractions = kept / kept_share
    at_depth = ZeroInflatedNegativeBinomial(
        mu=px.mu / kept_share, theta=px.theta, zi_logits=px.zi_logits, scale=fractions
    )
    return at_depth, fractions
