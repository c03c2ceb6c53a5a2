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
    print(f"Loaded the bundled PBMC cells: {adata.n_obs} cells x {adata.n_vars} genes.")
    ScDiffusion.setup_anndata(adata, cell_type_key="cell_type")
    model = ScDiffusion(adata)
    start = time.perf_counter()
    model.train(max_epochs=args.max_epochs)
    train_seconds = time.perf_counter() - start

    start = time.perf_counter()
    synthetic = model.generate(conditions=adata.obs[["cell_type"]], seed=args.seed)
    generate_seconds = time.perf_counter() - start
    synthetic.write_h5ad(out / "synthetic.h5ad")
    model.save(str(out / "model"), overwrite=True)

    space = metrics.shared_space(adata, synthetic)
    summary = {
        "n_cells": int(synthetic.n_obs),
        "train_seconds": round(train_seconds, 1),
        "train_seconds_per_stage": {k: round(v, 1) for k, v in model.stage_seconds_.items()},
        "generate_seconds": round(generate_seconds, 2),
        "conditional_accuracy_synthetic": metrics.conditional_accuracy(
            adata, synthetic, "cell_type", space=space
        ),
        "conditional_accuracy_real": metrics.conditional_accuracy(
            adata, adata, "cell_type", space=metrics.shared_space(adata, adata)
        ),
        **{
            f"mean_expression_{k}": v
            for k, v in metrics.mean_expression_correlation(adata, synthetic, space=space).items()
        },
    }
    pl.umap_real_vs_synthetic(adata, synthetic, color="cell_type", save=str(out / "umap.png"))
    (out / "fidelity.json").write_text(json.dumps(summary, indent=2))

    print("\nFidelity summary (synthetic cells vs the real training cells)")
    print(f"  cells generated                      {summary['n_cells']}")
    print(
        f"  training time                        {summary['train_seconds']} s "
        f"{summary['train_seconds_per_stage']}"
    )
    print(f"  generation time                      {summary['generate_seconds']} s")
    print(
        "  conditional accuracy (macro)         "
        f"{summary['conditional_accuracy_synthetic']:.3f}  "
        f"(real cells: {summary['conditional_accuracy_real']:.3f})"
    )
    print(f"  mean-expression Spearman            {summary['mean_expression_spearman']:.3f}")
    print(f"  mean-expression Pearson             {summary['mean_expression_pearson']:.3f}")
    print(
        f"\nWrote {out / 'synthetic.h5ad'}, {out / 'umap.png'}, {out / 'fidelity.json'}, "
        f"{out / 'model'}/"
    )
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
