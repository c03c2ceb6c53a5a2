"""Command-line interface: ``scvi-diffusion demo|train|generate|evaluate``."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
import warnings
from pathlib import Path

from ._paths import check_save_target

# the package's log records (for example a classifier trained on demand), shown as one line
PACKAGE_LOGGER = "scvi.diffusion"


def _demo(args: argparse.Namespace) -> int:
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import scvi

    from . import data, metrics, pl
    from .model._scdiffusion import ScDiffusion

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
    (out / "fidelity.json").write_text(json.dumps(summary, indent=2, allow_nan=False))
    pl.umap_real_vs_synthetic(test, synthetic, color="cell_type", save=str(out / "umap.png"))
    pl.gene_moments(test, synthetic, save=str(out / "gene_moments.png"))
    pl.metrics_summary(frame, save=str(out / "metrics_summary.png"))

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
    written = ("synthetic.h5ad", "umap.png", "gene_moments.png", "metrics_summary.png")
    written += ("fidelity.csv", "fidelity.json", "model/")
    print(f"\nWrote to {out}/: {', '.join(written)}")
    return 0


def _read(path: str, backed: bool = False):
    """The AnnData in ``path``; a ValueError that names the file if it cannot be read."""
    import anndata as ad

    if not Path(path).is_file():
        raise FileNotFoundError(f"No file at {path!r}.")
    try:
        adata = ad.read_h5ad(path, backed="r" if backed else None)
        if backed:
            # a backed file is read on demand: read its last cell now, so a truncated file
            # fails here and not in the middle of training
            adata.X[adata.n_obs - 1 :]
    except Exception as error:
        # h5py, anndata and the operating system each have their own errors for unreadable,
        # truncated and wrong-format files: one line that names the file instead
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(
            f"Cannot read {path!r} as an AnnData .h5ad file ({reason}). Give an .h5ad file "
            "written by anndata (`adata.write_h5ad(path)`)."
        ) from None
    return adata


def _train(args: argparse.Namespace) -> int:
    # before anything slow: a training of minutes must not end in a folder it cannot save to
    check_save_target(Path(args.out), args.overwrite, overwrite_hint="add --overwrite")
    adata = _read(args.data, backed=args.backed)
    print(f"Read {args.data}: {adata.n_obs} cells x {adata.n_vars} genes.")
    import scvi

    from .model._scdiffusion import ScDiffusion

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


def _value(key: str, value: str, continuous: list[str], option: str):
    """A value from the command line: a number for a continuous condition, else the label."""
    if key not in continuous:
        return value
    try:
        return float(value)
    except ValueError:
        raise ValueError(
            f"{option}: {key!r} is a continuous condition; give a number, got {value!r}."
        ) from None


def _conditions(pairs: list[str], continuous: list[str]) -> dict[str, object]:
    conditions = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--condition takes KEY=VALUE, got {pair!r}.")
        conditions[key] = _value(key, value, continuous, "--condition")
    return conditions


def _interpolation(triple: list[str] | None, continuous: list[str]) -> dict | None:
    if triple is None:
        return None
    key, *ends = triple
    return {key: tuple(_value(key, end, continuous, "--interpolate") for end in ends)}


def _generate(args: argparse.Namespace) -> int:
    from .model._scdiffusion import ScDiffusion

    adata = None if args.data is None else _read(args.data)
    if args.source is None and args.interpolate is None and args.start_time is not None:
        raise ValueError(
            "--start-time applies to counterfactuals and interpolation: give --source or "
            "--interpolate as well."
        )
    source = None if args.source is None else _read(args.source)
    model = ScDiffusion.load(args.model, adata=adata, accelerator=args.accelerator)
    continuous = model.continuous_condition_keys
    synthetic = model.generate(
        n=args.n,
        cell_type=args.cell_type,
        tissue=args.tissue,
        conditions=_conditions(args.condition, continuous) or None,
        interpolate=_interpolation(args.interpolate, continuous),
        n_points=args.n_points,
        source=source,
        start_time=args.start_time,
        keep_source_counts=args.keep_source_counts,
        guidance_scale=args.guidance_scale,
        sampler=args.sampler,
        n_steps=args.n_steps,
        output=args.output,
        batch_size=args.batch_size,
        seed=args.seed,
        out=args.out,
    )
    print(f"Wrote {synthetic.n_obs} cells x {synthetic.n_vars} genes to {args.out}.")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from . import metrics

    real, synthetic = _read(args.real), _read(args.synthetic)
    reference = None if args.reference is None else _read(args.reference)
    frame = metrics.evaluate(
        real,
        synthetic,
        condition_key=args.condition_key,
        reference=reference,
        random_state=args.seed,
    )
    if args.out:
        frame.to_csv(args.out)
    print(
        f"Fidelity of {synthetic.n_obs} synthetic vs {real.n_obs} real cells (floor: real vs "
        "real; floor_low to floor_high: where 95% of real-vs-real comparisons fall)"
    )
    print(metrics.verdicts(frame).to_string(float_format="{:.4g}".format))
    if reference is None:
        print(
            "The floor compares quarters of the real cells, fewer than the synthetic "
            "comparison: its spread is wider, and the verdicts lenient. --reference CELLS "
            "(other real cells, as many as the synthetic ones) gives a matched floor."
        )
    if args.out:
        print(f"Wrote every metric, overall and per condition, to {args.out}.")
    else:
        print("Headline metrics only: --out FILE writes every metric, overall and per condition.")
    return 0


def _add_seed(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="Random seed (default: %(default)s).")


def build_parser() -> argparse.ArgumentParser:
    """The ``scvi-diffusion`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="scvi-diffusion",
        description="Generate realistic single cells with latent diffusion (scDiffusion).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    _add_demo_command(commands)
    _add_train_command(commands)
    _add_generate_command(commands)
    _add_evaluate_command(commands)
    return parser


def _add_demo_command(commands) -> None:
    """The ``demo`` subcommand."""
    demo = commands.add_parser(
        "demo",
        help="Train on the bundled PBMC cells, generate, and write a UMAP and a fidelity summary.",
    )
    demo.add_argument("--out", default="demo_output", help="Output folder (default: %(default)s).")
    _add_seed(demo)
    demo.add_argument(
        "--max-epochs",
        type=int,
        default=None,
        help="Cap on every training stage, in passes over the cells (default: the model's "
        "budget).",
    )
    demo.set_defaults(func=_demo)


def _add_train_command(commands) -> None:
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
    _add_seed(train)
    train.add_argument(
        "--backed", action="store_true", help="Read DATA on demand instead of into memory."
    )
    train.add_argument("--overwrite", action="store_true", help="Replace a model in --out.")
    train.add_argument(
        "--no-save-data",
        action="store_true",
        help="Do not save the training cells with the model (generate then needs --data).",
    )
    train.set_defaults(func=_train)


def _add_generate_command(commands) -> None:
    """The ``generate`` subcommand."""
    generate = commands.add_parser(
        "generate",
        help="Generate cells from a saved model into an .h5ad file.",
        description="Load the model in MODEL and stream generated cells to --out.",
    )
    generate.add_argument("model", help="Folder of a saved model.")
    generate.add_argument("--out", required=True, help="File to write (.h5ad).")
    generate.add_argument("-n", type=int, help="Cells (default: 1000, or one per --source cell).")
    generate.add_argument("--cell-type", help="Cell type to generate.")
    generate.add_argument("--tissue", help="Tissue to generate.")
    generate.add_argument(
        "--condition",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="A condition to generate (repeat for several); a number for a continuous condition.",
    )
    generate.add_argument(
        "--interpolate",
        nargs=3,
        metavar=("KEY", "FROM", "TO"),
        help="Cells along a condition from one value to another: Gradient Interpolation of a "
        "categorical condition, a sweep of the value of a continuous one.",
    )
    generate.add_argument(
        "--n-points",
        type=int,
        default=11,
        help="With --interpolate: points along the way (default: 11).",
    )
    generate.add_argument(
        "--data", help="The training AnnData, if it was not saved with the model."
    )
    generate.add_argument(
        "--source",
        metavar="CELLS",
        help="Counterfactuals: an .h5ad file of real cells (raw counts, the training genes) to "
        "change to the requested conditions, keeping the rest of each cell.",
    )
    generate.add_argument(
        "--start-time",
        type=int,
        help="With --source: the timestep the source cells are inverted to, of 1000 "
        "(default: 200). Lower keeps more of each cell, higher reaches the new conditions "
        "more fully.",
    )
    generate.add_argument(
        "--keep-source-counts",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="With --source: keep each cell's counts, moved by the predicted change "
        "(default); --no-keep-source-counts draws them afresh.",
    )
    generate.add_argument(
        "--guidance-scale", type=float, help="Guidance scale (default: model's)."
    )
    generate.add_argument("--sampler", choices=["dpmpp_2m", "ddim", "ddpm"], help="Sampler.")
    generate.add_argument("--n-steps", type=int, help="Sampler steps (default: sampler's).")
    generate.add_argument(
        "--output",
        choices=["counts", "normalized"],
        default="counts",
        help="Counts or normalised expression (default: %(default)s).",
    )
    generate.add_argument(
        "--batch-size", type=int, default=2048, help="Cells per batch (default: %(default)s)."
    )
    _add_seed(generate)
    generate.add_argument(
        "--accelerator", default="auto", help="cpu, gpu or auto (default: %(default)s)."
    )
    generate.set_defaults(func=_generate)


def _add_evaluate_command(commands) -> None:
    """The ``evaluate`` subcommand."""
    evaluate = commands.add_parser(
        "evaluate",
        help="Score synthetic cells against real ones (metrics.evaluate).",
        description="Every fidelity metric of synthetic vs real cells, with its floor (real "
        "vs real cells). Give held-out real cells, not the training cells.",
    )
    evaluate.add_argument("real", help="Real cells (.h5ad, raw counts).")
    evaluate.add_argument("synthetic", help="Synthetic cells (.h5ad).")
    evaluate.add_argument("--condition-key", help="Obs column to score per condition.")
    evaluate.add_argument(
        "--reference",
        metavar="CELLS",
        help="Other real cells (.h5ad, raw counts) for the floor, ideally as many as the "
        "synthetic cells and in their composition, for example training cells (default: the "
        "real cells' halves).",
    )
    evaluate.add_argument("--out", help="CSV file for every metric, overall and per condition.")
    _add_seed(evaluate)
    evaluate.set_defaults(func=_evaluate)


def _one_line(message: object) -> str:
    return " ".join(str(message).split())


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line, ``scvi-diffusion: warning: ...``, without the source line that
    Python's default format echoes."""
    print(f"scvi-diffusion: warning: {_one_line(message)}", file=file or sys.stderr)


class _OneLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"scvi-diffusion: {record.levelname.lower()}: {_one_line(record.getMessage())}"


@contextlib.contextmanager
def _plain_messages():
    """Warnings and the package's log records as one plain line each, for a terminal or a log
    file, for the duration of a command."""
    logger = logging.getLogger(PACKAGE_LOGGER)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter())
    propagate = logger.propagate
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        logger.addHandler(handler)
        logger.propagate = False
        try:
            yield
        finally:
            logger.removeHandler(handler)
            logger.propagate = propagate


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``scvi-diffusion`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _plain_messages():
            return args.func(args)
    except (ValueError, TypeError, OSError) as error:
        # bad input (or a file that cannot be read or written) gets its message, not a
        # traceback; exit status 2 as for usage errors
        parser.exit(2, f"scvi-diffusion {args.command}: error: {error}\n")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
