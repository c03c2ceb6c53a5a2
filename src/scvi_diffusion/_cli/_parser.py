"""The ``scvi-diffusion`` argument parser: the top-level parser with one subparser per command,
each added by its command's module."""

from __future__ import annotations

import argparse

from ._demo import add_demo_command
from ._evaluate import add_evaluate_command
from ._generate import add_generate_command
from ._train import add_train_command


def build_parser() -> argparse.ArgumentParser:
    """The ``scvi-diffusion`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="scvi-diffusion",
        description="Generate realistic single cells with latent diffusion (scDiffusion).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add_demo_command(commands)
    add_train_command(commands)
    add_generate_command(commands)
    add_evaluate_command(commands)
    return parser
