"""``scvi-diffusion train``: train ScDiffusion on an ``.h5ad`` file of raw counts and save it,
with its training cells unless told not to."""

from __future__ import annotations

import argparse
from pathlib import Path

from .._paths import check_save_target
from ._shared import add_seed, read_anndata


def add_train_command(commands: argparse._SubParsersAction) -> None:
    """The ``train`` subcommand."""
    train = commands.add_parser(
        "train",
        help="Train a model on an .h5ad file of raw counts and save it.",
        description="Train ScDiffusion on DATA (raw counts) and save it to --out. The training "
        "cells are saved with the model (generate needs them), unless --no-save-data.",
    )
    train.add_argument("data", help="AnnData file (.h5ad) with raw counts.")
    train.add_argument("--out", required=True, help="Folder to save the model in.")
    train.add_argument("--cell-type-key", help="Obs column with cell types.")
    train.add_argument("--tissue-key", help="Obs column with tissues.")
    train.add_argument(
        "--condition-key",
        action="append",
        default=[],
        help="Further obs column to condition on (repeat for several).",
    )
    train.add_argument(
        "--continuous-condition-key",
        action="append",
        default=[],
        help="Numeric obs column to condition on as a value, e.g. time or dose (repeat for "
        "several).",
    )
    train.add_argument("--batch-key", help="Obs column with batches.")
    train.add_argument("--layer", help="Layer with the raw counts (default: X).")
    train.add_argument(
        "--guidance",
        choices=["classifier", "classifier_free"],
        default=None,
        help="Guidance mode (default: classifier_free; classifier is the paper's).",
    )
    train.add_argument(
        "--max-epochs",
        type=int,
        help="Cap on every stage, in passes over the cells (default: none).",
    )
    add_seed(train)
    train.add_argument(
        "--backed", action="store_true", help="Read DATA on demand instead of into memory."
    )
    train.add_argument("--overwrite", action="store_true", help="Replace a model in --out.")
    train.add_argument(
        "--no-save-data",
        action="store_true",
        help="Do not save the training cells with the model (generate then needs --data).",
    )
    train.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    """Run ``train``; 0 once the model is saved."""
    # before anything slow: a training of minutes must not end in a folder it cannot save to
    check_save_target(Path(args.out), args.overwrite, overwrite_hint="add --overwrite")
    adata = read_anndata(args.data, backed=args.backed)
    print(f"Read {args.data}: {adata.n_obs} cells x {adata.n_vars} genes.")
    import scvi

    from ..model._scdiffusion import ScDiffusion

    scvi.settings.seed = args.seed
    ScDiffusion.setup_anndata(
        adata,
        layer=args.layer,
        cell_type_key=args.cell_type_key,
        tissue_key=args.tissue_key,
        condition_keys=args.condition_key,
        batch_key=args.batch_key,
        continuous_condition_keys=args.continuous_condition_key or None,
    )
    model = ScDiffusion(adata, guidance=args.guidance)
    model.train(max_epochs=args.max_epochs)
    # the model needs its training cells (library sizes, conditions) to generate
    model.save(args.out, overwrite=args.overwrite, save_anndata=not args.no_save_data)
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in model.stage_seconds_.items())
    print(f"Trained ({stages}); saved the model to {args.out}.")
    return 0
