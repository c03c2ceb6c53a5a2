"""Training time per stage, generation speed and conditional accuracy on the bundled PBMC data.

Run with ``make bench`` or ``python benchmarks/train_generate.py [--seeds 0 1 2]``. Prints a
Markdown table for ``docs/benchmarks.md``. The fidelity figures here compare synthetic cells
with the training cells (held-out evaluation is ``benchmarks/fidelity.py``'s job).
"""

from __future__ import annotations

import argparse
import time
import warnings

import pandas as pd
import scvi
from _common import QUIET, machine_line, timed_train

import scvi_diffusion
from scvi_diffusion import ScDiffusion
from scvi_diffusion.metrics import conditional_accuracy, mean_expression_correlation, shared_space


def run(seed: int, settings: list[tuple[str, int, float]]) -> list[dict]:
    scvi.settings.seed = seed
    adata = scvi_diffusion.data.pbmc68k()
    ScDiffusion.setup_anndata(adata, cell_type_key="cell_type")
    model = ScDiffusion(adata)
    total = timed_train(model, **QUIET)
    types = list(adata.obs["cell_type"].cat.categories)
    balanced = pd.DataFrame({"cell_type": pd.Categorical(sorted(types * 100), categories=types)})
    rows = []
    for sampler, n_steps, scale in settings:
        kwargs = {"sampler": sampler, "n_steps": n_steps, "guidance_scale": scale}
        started = time.perf_counter()
        same = model.generate(
            conditions=adata.obs[["cell_type"]], seed=seed, progress_bar=False, **kwargs
        )
        seconds = time.perf_counter() - started
        per_type = model.generate(conditions=balanced, seed=seed, progress_bar=False, **kwargs)
        space = shared_space(adata, same)
        rows.append(
            {
                "seed": seed,
                "sampler": f"{sampler} {n_steps} steps",
                "guidance": scale,
                "vae_s": model.stage_seconds_["vae"],
                "diffusion_s": model.stage_seconds_["diffusion"],
                "classifier_s": model.stage_seconds_["classifier"],
                "train_total_s": total,
                "cells_per_s": same.n_obs / seconds,
                "cond_acc_macro": conditional_accuracy(adata, per_type, "cell_type"),
                "mean_spearman": mean_expression_correlation(adata, same, space=space)["spearman"],
            }
        )
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    settings = [
        ("ddim", 50, 0.0),
        ("ddim", 50, 2.0),
        ("ddim", 50, 4.0),
        ("ddim", 50, 8.0),
        ("ddpm", 1000, 4.0),
    ]
    rows = [row for seed in args.seeds for row in run(seed, settings)]
    table = pd.DataFrame(rows)
    groups = table.drop(columns="seed").groupby(["sampler", "guidance"], sort=False)
    means, spreads = groups.mean(), groups.std()
    print(
        machine_line("machine: {arch}, torch threads {threads}")
        + f", seeds {args.seeds} (mean ± sd over seeds)"
    )
    print("| sampler | guidance | " + " | ".join(means.columns) + " |")
    print("|---|---|" + "---|" * len(means.columns))
    for index, row in means.iterrows():
        cells = [
            f"{value:.3f}" + (f" ± {spreads.loc[index, col]:.3f}" if len(args.seeds) > 1 else "")
            for col, value in row.items()
        ]
        print(f"| {index[0]} | {index[1]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
