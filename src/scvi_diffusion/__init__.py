"""scvi-diffusion: generate realistic single cells with latent diffusion (scDiffusion)."""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

try:
    __version__ = version("scvi-diffusion")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

# Imported on first use (PEP 562): torch, scvi-tools and scanpy take seconds to import, and the
# command line answers `--help` and argument errors without them.
_LAZY = {
    "ModelFileError": ".model._model_file",
    "NonFiniteLossError": ".train._errors",
    "ScDiffusion": ".model._scdiffusion",
    "data": ".data",
    "metrics": ".metrics",
    "pl": ".pl",
}

if TYPE_CHECKING:
    from . import data, metrics, pl
    from .model._model_file import ModelFileError
    from .model._scdiffusion import ScDiffusion
    from .train._errors import NonFiniteLossError

__all__ = ["ModelFileError", "NonFiniteLossError", "ScDiffusion", "data", "metrics", "pl"]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name], __name__)
    value = module if _LAZY[name] == f".{name}" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
