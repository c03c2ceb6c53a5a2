"""The spread of what the behavioural tests measure, over training seeds: where their bounds
come from.

``python benchmarks/test_bounds.py [--seeds 0 1 2 3 4] [--jobs 2] [--out DIR]``. For each
seed the behavioural tests run (``pytest -n JOBS``, one torch thread per process, as
``make test`` runs them) with their models trained at that seed
(``SCVI_DIFFUSION_TEST_SEED``); each writes what it measures before it asserts
(``SCVI_DIFFUSION_TEST_FIGURES``, the ``figures`` fixture of ``tests/conftest.py``), passed or
not. Writes every figure to ``test_bounds_runs.jsonl`` and, per test and figure, the seed-0
value (what the suite sees) and the mean, sd, minimum and maximum over the seeds to
``test_bounds.md`` in ``--out``. ``-p PLUGIN`` is passed to pytest (for example a plugin that
changes a default, to measure a candidate).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

TESTS = (
    "tests/generation/test_integration.py",
    "tests/generation/test_counterfactual.py::test_counterfactuals_reach_the_held_out_combination",
    "tests/generation/test_perturbation.py",
    "tests/model/test_likelihood.py::test_read_counts_get_their_zeros_and_variance",
    "tests/model/test_pbmc3k_fidelity.py",
    "tests/conditions/test_continuous.py::test_the_denoiser_learns_the_value_and_interpolates_it",
    "tests/audit/test_audit.py::test_membership_scores_single_out_a_model_trained_far_past_its_data",
)


def run_seed(seed: int, figures: Path, jobs: int, plugins: list[str]) -> int:
    """The behavioural tests at one training seed; pytest's exit status."""
    environment = {
        **os.environ,
        "SCVI_DIFFUSION_TEST_SEED": str(seed),
        "SCVI_DIFFUSION_TEST_FIGURES": str(figures.resolve()),
    }
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", str(jobs)]
    for plugin in plugins:
        command += ["-p", plugin]
    return subprocess.run([*command, *TESTS], env=environment, check=False).returncode


def summary(runs: pd.DataFrame) -> str:
    """One table per test: each figure at seed 0 and over the seeds."""
    lines = ["# What the behavioural tests measure, over training seeds", ""]
    seeds = sorted(runs["seed"].unique())
    lines.append(f"Seeds {', '.join(map(str, seeds))}; one torch thread per process.")
    for test, rows in runs.groupby("test", sort=False):
        values = rows.drop(columns="test").set_index("seed").dropna(axis=1, how="all")
        lines += ["", f"## `{test}`", "", "| figure | seed 0 | mean ± sd | min | max |"]
        lines.append("|---|---|---|---|---|")
        for figure in values.columns:
            column = values[figure].dropna()
            first = f"{column.loc[0]:.3f}" if 0 in column.index else ""
            lines.append(
                f"| {figure} | {first} | {column.mean():.3f} ± {column.std():.3f} | "
                f"{column.min():.3f} | {column.max():.3f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("-p", dest="plugins", action="append", default=[])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--report", action="store_true", help="Only summarise the runs file.")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    figures = args.out / "test_bounds_runs.jsonl"
    if not args.report:
        figures.unlink(missing_ok=True)
        for seed in args.seeds:
            status = run_seed(seed, figures, args.jobs, args.plugins)
            print(f"seed {seed}: pytest exit status {status}", flush=True)
    runs = pd.DataFrame([json.loads(line) for line in figures.read_text().splitlines()])
    text = summary(runs)
    (args.out / "test_bounds.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
