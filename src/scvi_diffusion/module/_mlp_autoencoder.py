"""The scDiffusion paper's MLP autoencoder on log-normalised expression."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scvi import REGISTRY_KEYS
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data
from scvi.nn import FCLayers
from torch.distributions import Normal

from .._constants import NORMALIZED_TARGET_SUM


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
        return torch.log1p(counts / totals * NORMALIZED_TARGET_SUM)

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
