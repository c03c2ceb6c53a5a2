"""scvi-diffusion: generate realistic single cells with latent diffusion (scDiffusion)."""

from importlib.metadata import PackageNotFoundError, version

from . import data, metrics, pl
from .model._model_file import ModelFileError
from .model._scdiffusion import ScDiffusion
from .train._errors import NonFiniteLossError

try:
    __version__ = version("scvi-diffusion")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["ModelFileError", "NonFiniteLossError", "ScDiffusion", "data", "metrics", "pl"]
