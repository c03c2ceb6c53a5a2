"""``scvi-diffusion generate``: load a saved model and stream generated cells to an ``.h5ad``
file: new cells under the requested conditions, cells along an interpolation, or
counterfactuals of real cells; conditions given on the command line are parsed here."""

from __future__ import annotations

import argparse

from ._shared import add_seed, read_anndata


def add_generate_command(commands: argparse._SubParsersAction) -> None:
    """The ``generate`` subcommand."""
    generate = commands.add_parser(
        "generate",
        help="Generate cells from a saved model into an .h5ad file.",
        description="Load the model in MODEL and stream generated cells to --out.",
    )
    generate.add_argument("model", help="Folder of a saved model.")
    generate.add_argument("--out", required=True, help="File to write (.h5ad).")
    _add_request_options(generate)
    _add_input_options(generate)
    _add_sampling_options(generate)
    generate.set_defaults(func=run_generate)


def _add_request_options(generate: argparse.ArgumentParser) -> None:
    """Which cells to generate: how many, under which conditions, or along which path."""
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


def _add_input_options(generate: argparse.ArgumentParser) -> None:
    """The cells read from files: the training cells, and the counterfactuals' sources."""
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


def _add_sampling_options(generate: argparse.ArgumentParser) -> None:
    """How to sample and write the cells: guidance, sampler, output, batches, seed, device."""
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
    add_seed(generate)
    generate.add_argument(
        "--accelerator", default="auto", help="cpu, gpu or auto (default: %(default)s)."
    )


def _value(key: str, value: str, continuous: list[str], option: str) -> str | float:
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
    """The ``--condition KEY=VALUE`` options as a dict of conditions."""
    conditions = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--condition takes KEY=VALUE, got {pair!r}.")
        conditions[key] = _value(key, value, continuous, "--condition")
    return conditions


def _interpolation(triple: list[str] | None, continuous: list[str]) -> dict | None:
    """The ``--interpolate KEY FROM TO`` option as ``{key: (from, to)}``, or None."""
    if triple is None:
        return None
    key, *ends = triple
    return {key: tuple(_value(key, end, continuous, "--interpolate") for end in ends)}


def run_generate(args: argparse.Namespace) -> int:
    """Run ``generate``; 0 once the cells are written."""
    from ..model._scdiffusion import ScDiffusion

    adata = None if args.data is None else read_anndata(args.data)
    if args.source is None and args.interpolate is None and args.start_time is not None:
        raise ValueError(
            "--start-time applies to counterfactuals and interpolation: give --source or "
            "--interpolate as well."
        )
    source = None if args.source is None else read_anndata(args.source)
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
