"""scvi-diffusion: generate realistic single cells with latent diffusion (scDiffusion)."""

from importlib.metadata import PackageNotFoundError, version

from . import data, metrics, pl
from ._model import ScDiffusion

try:
    __version__ = version("scvi-diffusion")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["ScDiffusion", "data", "metrics", "pl"]
