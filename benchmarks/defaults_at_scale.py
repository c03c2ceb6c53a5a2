"""The defaults beyond the measured datasets: default training on bootstrapped cells.

``python benchmarks/defaults_at_scale.py [--n-cells 20000] [--seed 0]``. Bootstrapped PBMCs
(:func:`~scvi_diffusion.data.pbmc68k_bootstrap`: the 700 bundled cells resampled with Poisson
noise, 765 genes) are not new biology, so this is for timing and sanity only (fidelity claims
need real cells: ``benchmarks/fidelity.py``). With default settings, on the same cells:
``ScDiffusion`` (cell type registered) and ``scvi.model.SCVI``, each trained once; then
``ScDiffusion`` generates 2,000 cells in the training composition, scored by a classifier
trained on real cells (conditional accuracy, beside real held-out bootstrapped cells' own) and
by the mean-expression correlation. Prints one JSON line per size.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import scvi
from _common import QUIET, timed_train

import scvi_diffusion
from scvi_diffusion import ScDiffusion
from scvi_diffusion.metrics import conditional_accuracy, mean_expression_correlation

warnings.filterwarnings("ignore")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-cells", type=int, nargs="+", default=[20_000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--diffusion-steps",
        type=int,
        nargs="*",
        default=[],
        help="After the default training, retrain the denoiser alone with each of these step "
        "budgets and score each (is the default budget enough at this size?).",
    )
    parser.add_argument("--skip-scvi", action="store_true", help="Leave scVI's training out.")
    args = parser.parse_args()
    for n_cells in args.n_cells:
        cells = scvi_diffusion.data.pbmc68k_bootstrap(n_obs=n_cells, n_vars=765, seed=args.seed)
        held_out = scvi_diffusion.data.pbmc68k_bootstrap(n_obs=2_000, n_vars=765, seed=99)
        scvi.settings.seed = args.seed
        ScDiffusion.setup_anndata(cells, cell_type_key="cell_type")
        model = ScDiffusion(cells)
        seconds = timed_train(model, **QUIET)
        started = time.perf_counter()
        synthetic = model.generate(
            conditions=held_out.obs[["cell_type"]], seed=args.seed, progress_bar=False
        )
        generate_seconds = time.perf_counter() - started
        scvi_seconds = float("nan")
        if not args.skip_scvi:
            reference = cells.copy()
            scvi.model.SCVI.setup_anndata(reference)
            scvi_seconds = timed_train(scvi.model.SCVI(reference), **QUIET)
        record = {
            "n_cells": n_cells,
            "diffusion_steps": "default",
            "train_seconds": seconds,
            "scvi_train_seconds": scvi_seconds,
            "ratio": seconds / scvi_seconds,
            "generate_seconds_2000": generate_seconds,
            **scores(cells, held_out, synthetic),
        }
        print(json.dumps(record), flush=True)
        for steps in args.diffusion_steps:
            seconds = timed_train(model, stages=["diffusion"], diffusion_steps=steps, **QUIET)
            synthetic = model.generate(
                conditions=held_out.obs[["cell_type"]], seed=args.seed, progress_bar=False
            )
            record = {"n_cells": n_cells, "diffusion_steps": steps, "diffusion_seconds": seconds}
            print(json.dumps(record | scores(cells, held_out, synthetic)), flush=True)


def scores(cells, held_out, synthetic) -> dict:
    """Conditional accuracy (beside the real held-out cells') and mean-expression Spearman."""
    return {
        "conditional_accuracy": conditional_accuracy(cells, synthetic, "cell_type"),
        "conditional_accuracy_real": conditional_accuracy(cells, held_out, "cell_type"),
        "mean_spearman": mean_expression_correlation(held_out, synthetic)["spearman"],
    }


if __name__ == "__main__":
    main()
