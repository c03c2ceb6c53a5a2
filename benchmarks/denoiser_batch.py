"""The denoiser's minibatch size and step budget against its time, held-out fidelity and
held-out combinations.

``python benchmarks/denoiser_batch.py [--settings 256x4000 512x2000 512x2000_lr1.5e-3]
[--seeds 0 1 2] [--datasets pbmc68k pbmc3k two_factor] [--out DIR]``. The protocol of
``benchmarks/denoiser_width.py`` (the same splits, one VAE per dataset and seed shared by every
setting, the same scores), with one denoiser per setting: a minibatch size, a number of
optimiser steps and a learning rate. A step of the small denoiser costs little more at 512 cells
than at 256 (most of it is per-operation overhead), so twice the cells in half the steps sees
the same cells in less time.

Writes ``denoiser_batch_runs.csv`` and ``denoiser_batch.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from denoiser_width import run

warnings.filterwarnings("ignore")

SETTINGS = {
    "256x4000": {"latent_batch_size": 256, "diffusion_steps": 4000},
    "512x2000": {"latent_batch_size": 512, "diffusion_steps": 2000},
    "512x2000_lr1.5e-3": {
        "latent_batch_size": 512,
        "diffusion_steps": 2000,
        "diffusion_plan_kwargs": {"lr": 1.5e-3},
    },
    "512x2000_lr2e-3": {
        "latent_batch_size": 512,
        "diffusion_steps": 2000,
        "diffusion_plan_kwargs": {"lr": 2e-3},
    },
    "512x2500": {"latent_batch_size": 512, "diffusion_steps": 2500},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS)[:3], choices=SETTINGS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", default=["pbmc68k", "pbmc3k", "two_factor"])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    # the default width; each setting's minibatch, steps and learning rate
    settings = {name: (None, SETTINGS[name]) for name in args.settings}
    title = "The denoiser's minibatch and steps"
    run(settings, args.datasets, args.seeds, args.out, "denoiser_batch", title, "setting")


if __name__ == "__main__":
    main()
