"""Command-line interface: ``scvi-diffusion demo|train|generate|evaluate``, one module per
command (its subparser and what it runs), assembled by ``_parser`` and run by ``_main``; the
commands import torch, scvi-tools and scanpy only when they run, so ``--help`` answers at once.
"""

from __future__ import annotations

from ._main import main
from ._parser import build_parser

__all__ = ["build_parser", "main"]
