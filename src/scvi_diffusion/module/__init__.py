"""The torch networks: autoencoders, denoiser and guidance classifiers, and count sampling."""

from ._latent_modules import ConditionClassifiersModule, LatentDiffusionModule
from ._mlp_autoencoder import MLPAutoencoder
from ._module import ScDiffusionModule
from ._networks import NoisyLatentClassifier, SkipMLPDenoiser

__all__ = [
    "ConditionClassifiersModule",
    "LatentDiffusionModule",
    "MLPAutoencoder",
    "NoisyLatentClassifier",
    "ScDiffusionModule",
    "SkipMLPDenoiser",
]
