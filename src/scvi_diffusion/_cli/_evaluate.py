"""``scvi-diffusion evaluate``: every fidelity metric of synthetic vs real cells beside its
floor (real vs real cells), printed as verdicts and optionally written to a CSV file."""

from __future__ import annotations

import argparse

from ._shared import add_seed, read_anndata


def add_evaluate_command(commands: argparse._SubParsersAction) -> None:
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
    add_seed(evaluate)
    evaluate.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    """Run ``evaluate``; 0 once the verdicts are printed (and the table written)."""
    from .. import metrics

    real, synthetic = read_anndata(args.real), read_anndata(args.synthetic)
    reference = None if args.reference is None else read_anndata(args.reference)
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
