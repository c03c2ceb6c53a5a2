"""Torch modules: the composite ScDiffusion module and its trainable stages."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from scvi import REGISTRY_KEYS
from scvi.module import VAE
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data
from scvi.nn import FCLayers
from torch.distributions import Distribution, Normal, Poisson

from ._components import NoisyLatentClassifier, SkipMLPDenoiser
from ._diffusion import LinearNoiseSchedule

AUTOENCODERS = ("scvi", "mlp")
"""``"scvi"``: scVI's VAE on counts. ``"mlp"``: the scDiffusion paper's MLP autoencoder."""

GUIDANCE_MODES = ("classifier", "classifier_free")
"""How conditions steer sampling: noisy-latent classifiers, or a conditional denoiser."""

LOG_NORMALIZED_TARGET_SUM = 1e4

CELLS_PER_TIMESTEP = 8
"""Cells of a training minibatch that share a (stratified) timestep: the time embeddings, most
of a step's work, are computed once per distinct timestep."""


class MLPAutoencoder(BaseModuleClass):
    """The scDiffusion paper's deterministic autoencoder on log-normalised expression.

    Counts are normalised to ``1e4`` per cell and log1p-transformed; an MLP encodes them to an
    L2-normalised latent and an MLP with a ReLU output decodes them back; the loss is the mean
    squared error. The paper's shape (one encoder layer, two growing decoder layers) is kept at
    a width that trains in minutes on a CPU.

    Parameters
    ----------
    n_input
        Number of genes.
    n_latent
        Latent size (128 in the paper).
    encoder_hidden
        Width of the encoder's hidden layer.
    decoder_hidden
        Widths of the decoder's two hidden layers.
    """

    def __init__(
        self,
        n_input: int,
        n_latent: int = 128,
        encoder_hidden: int = 1024,
        decoder_hidden: tuple[int, int] = (1024, 2048),
    ):
        super().__init__()
        self.n_latent = n_latent
        self.encoder = torch.nn.Sequential(
            FCLayers(n_input, encoder_hidden, n_layers=1, dropout_rate=0.0),
            torch.nn.Linear(encoder_hidden, n_latent),
        )
        self.decoder = torch.nn.Sequential(
            FCLayers(
                n_latent,
                decoder_hidden[1],
                n_layers=2,
                n_hidden=decoder_hidden[0],
                dropout_rate=0.0,
            ),
            torch.nn.Linear(decoder_hidden[1], n_input),
            torch.nn.ReLU(),
        )

    @staticmethod
    def log_normalize(counts: torch.Tensor) -> torch.Tensor:
        """normalize_total(1e4) + log1p of raw counts."""
        totals = counts.sum(-1, keepdim=True).clamp_min(1.0)
        return torch.log1p(counts / totals * LOG_NORMALIZED_TARGET_SUM)

    def _get_inference_input(self, tensors, **kwargs):
        return {"x": tensors[REGISTRY_KEYS.X_KEY]}

    @auto_move_data
    def inference(self, x: torch.Tensor, **kwargs):
        """Encode counts to an L2-normalised latent.

        The encoder is deterministic; ``qz`` is a point mass (a Normal of negligible scale) so
        that scvi-tools' latent utilities work unchanged.
        """
        log_x = self.log_normalize(x)
        z = F.normalize(self.encoder(log_x), dim=-1)
        return {"z": z, "qz": Normal(z, torch.full_like(z, 1e-8)), "log_x": log_x}

    def _get_generative_input(self, tensors, inference_outputs, **kwargs):
        return {"z": inference_outputs["z"]}

    @auto_move_data
    def generative(self, z: torch.Tensor, **kwargs):
        """Decode latents to log-normalised expression."""
        return {"log_expression": self.decoder(z)}

    def loss(self, tensors, inference_outputs, generative_outputs, **kwargs) -> LossOutput:
        """Mean squared error on log-normalised expression (``kl_weight`` is ignored)."""
        # the inference already normalised the same counts
        target = inference_outputs["log_x"]
        per_cell = F.mse_loss(generative_outputs["log_expression"], target, reduction="none").mean(
            -1
        )
        return LossOutput(loss=per_cell.mean(), reconstruction_loss=per_cell)


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
    n_classes
        For classifier-free guidance: categories of each condition the denoiser is conditioned
        on. Empty: an unconditional denoiser.
    condition_registry_keys
        Registry key holding each condition's codes, in the order of ``n_classes``.
    condition_dropout
        Probability with which each condition is replaced by its null label in training, so
        the denoiser also learns every partly and fully unconditional prediction.
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
    ):
        super().__init__()
        if len(n_classes) != len(condition_registry_keys):
            raise ValueError("Give one registry key per conditioned condition.")
        if not 0.0 <= condition_dropout <= 1.0:
            raise ValueError(f"`condition_dropout` must be in [0, 1], got {condition_dropout!r}.")
        self.schedule = LinearNoiseSchedule(n_timesteps, beta_start, beta_end)
        self.denoiser = SkipMLPDenoiser(n_latent, hidden_dims, dropout_rate, n_classes)
        self.condition_registry_keys = list(condition_registry_keys)
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
        """Whether the denoiser takes condition labels (classifier-free guidance)."""
        return bool(self.condition_registry_keys)

    def _get_inference_input(self, tensors, **kwargs):
        labels = None
        if self.is_conditional:
            labels = torch.cat(
                [tensors[key].long().view(-1, 1) for key in self.condition_registry_keys], dim=1
            )
        return {"x0": tensors[REGISTRY_KEYS.X_KEY], "labels": labels}

    @auto_move_data
    def inference(self, x0: torch.Tensor, labels: torch.Tensor | None = None):
        """Noise clean latents at uniformly drawn timesteps; drop conditions in training."""
        t = self.schedule.sample_timesteps(
            x0.shape[0], device=x0.device, cells_per_timestep=CELLS_PER_TIMESTEP
        )
        noise = torch.randn_like(x0)
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
    ):
        super().__init__()
        if guidance not in GUIDANCE_MODES:
            raise ValueError(
                f"Unknown guidance {guidance!r}; choose one of {list(GUIDANCE_MODES)}."
            )
        self.guidance_mode = guidance
        if autoencoder not in AUTOENCODERS:
            raise ValueError(
                f"Unknown autoencoder {autoencoder!r}; choose one of {list(AUTOENCODERS)}."
            )
        self.n_latent = n_latent
        self.autoencoder_kind = autoencoder
        if autoencoder == "scvi":
            self.autoencoder = VAE(
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
        else:
            self.autoencoder = MLPAutoencoder(n_input, n_latent)
        classifier_free = guidance == "classifier_free"
        self.diffusion = LatentDiffusionModule(
            n_latent,
            denoiser_hidden_dims,
            n_timesteps,
            beta_start,
            beta_end,
            n_classes=n_classes if classifier_free else (),
            condition_registry_keys=condition_registry_keys if classifier_free else (),
            condition_dropout=condition_dropout,
        )
        # without classifiers in the classifier-free mode; kept for its horizon and schedule,
        # which guidance classifiers trained on demand (unregistered columns) share
        self.guidance = ConditionClassifiersModule(
            n_latent,
            () if classifier_free else n_classes,
            () if classifier_free else condition_registry_keys,
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
            return px, px.scale
        # no gene can exceed the whole normalised library; the cap also keeps expm1 finite
        # for latents that guidance pushed far from the data
        log_expression = self.autoencoder.generative(z=z)["log_expression"]
        cap = math.log1p(LOG_NORMALIZED_TARGET_SUM)
        expression = torch.expm1(torch.nan_to_num(log_expression, nan=0.0).clamp(0.0, cap))
        fractions = expression / expression.sum(-1, keepdim=True).clamp_min(1e-12)
        return Poisson(fractions * library.unsqueeze(-1)), fractions
