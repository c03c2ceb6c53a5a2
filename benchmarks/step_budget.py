"""Held-out fidelity against the denoiser's step budget (and how training timesteps are drawn).

``python benchmarks/step_budget.py [--seeds 0 1 2] [--datasets pbmc68k pbmc3k] [--out DIR]``.
For every dataset and seed: a stratified split (30% held out for the bundled PBMCs, 20% for
PBMC3K, read from ``../shared/data/pbmc3k_raw.h5ad``: the labelled cells, genes detected in at
least 30 of them); on the training cells the VAE is trained once at its default; each
denoiser and classifier configuration of the settings is trained once from the same initial
weights; for each setting, the test cells' composition is generated (two generation seeds) and
:func:`scvi_diffusion.metrics.evaluate` scores it against the held-out cells beside the floor
(real training cells in the test composition). Writes ``step_budget_runs.csv`` and
``step_budget.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scvi
from _common import (
    fidelity_dataset,
    held_out_floor,
    held_out_scores,
    split_with_reference,
    timed_train,
)

from scvi_diffusion import ScDiffusion
from scvi_diffusion.module import _latent_modules
from scvi_diffusion.train._latent_data import stage_step_budget

warnings.filterwarnings("ignore")

METRICS = ("mmd", "w2", "knn_auc", "rf_auc", "conditional_accuracy", "mean_spearman")
# the denoiser: (steps, cells sharing a training timestep, Adam's epsilon)
BEFORE = (12_000, 1, 0.01)
# the classifiers: (steps, Adam's epsilon); None steps: the default budget
CLASSIFIER_DEFAULT = (None, 0.01)
SETTINGS = {
    "12k steps, a timestep per cell (before)": (BEFORE, CLASSIFIER_DEFAULT),
    "12k steps, 8 cells per timestep": ((12_000, 8, 0.01), CLASSIFIER_DEFAULT),
    "6k steps, 8 cells per timestep": ((6_000, 8, 0.01), CLASSIFIER_DEFAULT),
    "3k steps, 8 cells per timestep": ((3_000, 8, 0.01), CLASSIFIER_DEFAULT),
    "3k steps, 8 cells per timestep, Adam eps 1e-8": ((3_000, 8, 1e-8), CLASSIFIER_DEFAULT),
    "4k steps, 8 cells per timestep, Adam eps 1e-8": ((4_000, 8, 1e-8), CLASSIFIER_DEFAULT),
    "3k steps, eps 1e-8; classifiers: half the steps, eps 1e-8": (
        (3_000, 8, 1e-8),
        (0.5, 1e-8),
    ),
}


def run(name: str, seed: int, settings: dict) -> list[dict]:
    adata, test_size = fidelity_dataset(name)
    train, test, reference = split_with_reference(adata, seed, test_size=test_size)
    rows = [
        {"dataset": name, "seed": seed, "setting": "floor (real train vs test)"}
        | held_out_floor(test, reference, seed, METRICS)
    ]
    scvi.settings.seed = seed
    ScDiffusion.setup_anndata(train, cell_type_key="cell_type")
    model = ScDiffusion(train)
    initial = {
        "diffusion": copy.deepcopy(model.module.diffusion.denoiser.state_dict()),
        "classifier": copy.deepcopy(model.module.guidance.state_dict()),
    }
    model.train(stages=["vae"], progress_bar=False)
    # each denoiser and classifier configuration is trained once per split, from the same
    # initial weights (the latent standardisation, a buffer of the diffusion, is kept)
    trained, seconds = {}, {}
    default_classifier_steps = stage_step_budget("classifier", None, None, train.n_obs, 256).steps
    for setting in settings.values():
        for stage, config in zip(("classifier", "diffusion"), setting[::-1], strict=True):
            if (stage, config) in trained:
                continue
            target = {
                "diffusion": model.module.diffusion.denoiser,
                "classifier": model.module.guidance,
            }[stage]
            target.load_state_dict(initial[stage])
            scvi.settings.seed = seed
            if stage == "diffusion":
                steps, cells_per_timestep, eps = config
                _latent_modules.CELLS_PER_TIMESTEP = cells_per_timestep
                kwargs = {"diffusion_steps": steps, "diffusion_plan_kwargs": {"eps": eps}}
            else:
                fraction, eps = config
                _latent_modules.CELLS_PER_TIMESTEP = 8
                kwargs = {"classifier_plan_kwargs": {"eps": eps}}
                if fraction is not None:
                    kwargs["classifier_steps"] = max(1, round(fraction * default_classifier_steps))
            seconds[(stage, config)] = timed_train(
                model, stages=[stage], progress_bar=False, **kwargs
            )
            trained[(stage, config)] = copy.deepcopy(target.state_dict())
    _latent_modules.CELLS_PER_TIMESTEP = 8
    for setting, (diffusion, classifier) in settings.items():
        model.module.diffusion.denoiser.load_state_dict(trained[("diffusion", diffusion)])
        model.module.guidance.load_state_dict(trained[("classifier", classifier)])
        row = {
            "dataset": name,
            "seed": seed,
            "setting": setting,
            "diffusion_s": seconds[("diffusion", diffusion)],
            "classifier_s": seconds[("classifier", classifier)],
        }
        rows.append(row | held_out_scores(model, test, seed, METRICS))
        print(rows[-1], flush=True)
    return rows


def report(table: pd.DataFrame) -> str:
    """Mean ± sd over seeds per dataset (and per run, where the table has several)."""
    lines = []
    keys = ["run", "dataset"] if "run" in table.columns else ["dataset"]
    for key, frame in table.groupby(keys, sort=False):
        name = " / ".join(
            f"run {k}" if c == "run" else str(k) for c, k in zip(keys, key, strict=True)
        )
        columns = [c for c in (*METRICS, "diffusion_s", "classifier_s") if c in frame.columns]
        groups = frame.groupby("setting", sort=False)[columns]
        means, spreads = groups.mean(), groups.std()
        seeds = sorted(int(seed) for seed in frame["seed"].unique())
        lines += [f"**{name}** (seeds {seeds}; mean ± sd over seeds)", ""]
        lines += ["| setting | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
        for setting, row in means.iterrows():
            cells = [
                "" if np.isnan(value) else f"{value:.3f} ± {spreads.loc[setting, c]:.3f}"
                for c, value in row.items()
            ]
            lines.append(f"| {setting} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", default=["pbmc68k", "pbmc3k"])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument(
        "--report", type=Path, help="Only write step_budget.md from this runs CSV (no training)."
    )
    args = parser.parse_args()
    if args.report is not None:
        text = report(pd.read_csv(args.report))
        (args.out / "step_budget.md").write_text(text)
        print(text)
        return
    settings = {name: SETTINGS[name] for name in args.settings}
    rows = [
        row for name in args.datasets for seed in args.seeds for row in run(name, seed, settings)
    ]
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "step_budget_runs.csv", index=False)
    text = report(table)
    (args.out / "step_budget.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
