"""Command-line interface: ``scvi-diffusion demo``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _demo(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import scvi

    from . import data, metrics, pl
    from ._model import ScDiffusion

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
    overall = frame.loc["all"]
    summary = {
        "n_cells": int(synthetic.n_obs),
        "train_seconds": round(train_seconds, 1),
        "train_seconds_per_stage": {k: round(v, 1) for k, v in model.stage_seconds_.items()},
        "generate_seconds": round(generate_seconds, 2),
        "mmd_bandwidths": list(frame.attrs["mmd_bandwidths"]),
        "metrics": {
            metric: {"synthetic": float(row["synthetic"]), "floor": float(row["floor"])}
            for metric, row in overall.iterrows()
        },
    }
    (out / "fidelity.json").write_text(json.dumps(summary, indent=2))
    pl.umap_real_vs_synthetic(test, synthetic, color="cell_type", save=str(out / "umap.png"))
    pl.gene_moments(test, synthetic, save=str(out / "gene_moments.png"))
    pl.metrics_summary(frame, save=str(out / "metrics_summary.png"))

    print("\nFidelity summary: synthetic vs held-out real cells; floor = real training cells")
    print(f"  cells generated     {summary['n_cells']}")
    print(
        f"  training time       {summary['train_seconds']} s {summary['train_seconds_per_stage']}"
    )
    print(f"  generation time     {summary['generate_seconds']} s")
    print(f"  {'metric':<30}{'synthetic':>10}{'floor':>10}")
    for metric, row in overall.iterrows():
        print(f"  {metric:<30}{row['synthetic']:>10.3f}{row['floor']:>10.3f}")
    written = ("synthetic.h5ad", "umap.png", "gene_moments.png", "metrics_summary.png")
    written += ("fidelity.csv", "fidelity.json", "model/")
    print(f"\nWrote to {out}/: {', '.join(written)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``scvi-diffusion`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="scvi-diffusion",
        description="Generate realistic single cells with latent diffusion (scDiffusion).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="Train on the bundled PBMC cells, generate, and write a UMAP and a fidelity summary.",
    )
    demo.add_argument("--out", default="demo_output", help="Output folder (default: %(default)s).")
    demo.add_argument("--seed", type=int, default=0, help="Random seed (default: %(default)s).")
    demo.add_argument(
        "--max-epochs",
        type=int,
        default=None,
        help="Cap on the epochs of every training stage (default: the model's budget).",
    )
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``scvi-diffusion`` command."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
