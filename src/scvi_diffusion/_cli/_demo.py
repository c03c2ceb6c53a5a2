"""``scvi-diffusion demo``: train on the bundled PBMC cells, generate as many cells as the
held-out ones, score them, and write the cells, the model, the scores and three figures."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ._shared import add_seed

if TYPE_CHECKING:
    import anndata as ad
    import pandas as pd

    from ..model._scdiffusion import ScDiffusion

# what the demo writes in its output folder, in the order it lists them
WRITTEN = (
    "synthetic.h5ad",
    "umap.png",
    "gene_moments.png",
    "metrics_summary.png",
    "fidelity.csv",
    "fidelity.json",
    "model/",
)


def add_demo_command(commands: argparse._SubParsersAction) -> None:
    """The ``demo`` subcommand."""
    demo = commands.add_parser(
        "demo",
        help="Train on the bundled PBMC cells, generate, and write a UMAP and a fidelity summary.",
    )
    demo.add_argument("--out", default="demo_output", help="Output folder (default: %(default)s).")
    add_seed(demo)
    demo.add_argument(
        "--max-epochs",
        type=int,
        default=None,
        help="Cap on every training stage, in passes over the cells (default: the model's "
        "budget).",
    )
    demo.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    """Run ``demo``; 0 once every file is written."""
    import matplotlib

    # the figures go to files: no display needed, as on a server
    matplotlib.use("Agg")
    import scvi

    from .. import data, metrics, pl
    from ..model._scdiffusion import ScDiffusion

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scvi.settings.seed = args.seed

    adata = data.pbmc68k()
    train, test = metrics.stratified_split(adata, "cell_type", random_state=args.seed)
    print(
        f"Loaded the bundled PBMC cells: {adata.n_obs} cells x {adata.n_vars} genes; training "
        f"on {train.n_obs}, holding out {test.n_obs} (stratified by cell type)."
    )
    ScDiffusion.setup_anndata(train, cell_type_key="cell_type")
    model = ScDiffusion(train)
    start = time.perf_counter()
    model.train(max_epochs=args.max_epochs)
    train_seconds = time.perf_counter() - start

    start = time.perf_counter()
    synthetic = model.generate(conditions=test.obs[["cell_type"]], seed=args.seed)
    generate_seconds = time.perf_counter() - start
    synthetic.write_h5ad(out / "synthetic.h5ad")
    model.save(str(out / "model"), overwrite=True)

    print("Scoring the synthetic cells against the held-out real cells ...")
    reference = metrics.matched_sample(train, test, "cell_type", random_state=args.seed)
    frame = metrics.evaluate(
        test, synthetic, condition_key="cell_type", reference=reference, random_state=args.seed
    )
    frame.to_csv(out / "fidelity.csv")
    summary = _summary(frame, model, synthetic, train_seconds, generate_seconds)
    (out / "fidelity.json").write_text(json.dumps(summary, indent=2, allow_nan=False))
    pl.umap_real_vs_synthetic(test, synthetic, color="cell_type", save=str(out / "umap.png"))
    pl.gene_moments(test, synthetic, save=str(out / "gene_moments.png"))
    pl.metrics_summary(frame, save=str(out / "metrics_summary.png"))
    _print_summary(summary, frame, out)
    return 0


def _summary(
    frame: pd.DataFrame,
    model: ScDiffusion,
    synthetic: ad.AnnData,
    train_seconds: float,
    generate_seconds: float,
) -> dict:
    """The demo's ``fidelity.json``: timings, MMD bandwidths, and each metric over all cells."""
    import numpy as np

    overall = frame.loc["all"]
    return {
        "n_cells": int(synthetic.n_obs),
        "train_seconds": round(train_seconds, 1),
        "train_seconds_per_stage": {k: round(v, 1) for k, v in model.stage_seconds_.items()},
        "generate_seconds": round(generate_seconds, 2),
        "mmd_bandwidths": list(frame.attrs["mmd_bandwidths"]),
        "metrics": {
            metric: {
                # null, not NaN, where a figure is missing: strict JSON readers refuse NaN
                **{
                    k: float(row[k]) if np.isfinite(row[k]) else None
                    for k in ("synthetic", "floor", "floor_low", "floor_high")
                },
                "verdict": row["verdict"],
            }
            for metric, row in overall.iterrows()
        },
    }


def _print_summary(summary: dict, frame: pd.DataFrame, out: Path) -> None:
    """Print the timings, the headline metrics' verdicts, and what was written where."""
    from .. import metrics

    print("\nFidelity summary: synthetic vs held-out real cells; floor = real training cells")
    print(f"  cells generated     {summary['n_cells']}")
    print(
        f"  training time       {summary['train_seconds']} s {summary['train_seconds_per_stage']}"
    )
    print(f"  generation time     {summary['generate_seconds']} s")
    print(
        "\nHeadline metrics; floor_low to floor_high: where 95% of real-vs-real comparisons "
        "fall (every metric, per cell type too, in fidelity.csv)"
    )
    print(metrics.verdicts(frame).to_string(float_format="{:.4g}".format))
    print(f"\nWrote to {out}/: {', '.join(WRITTEN)}")
