"""Conditioning power: classifier vs classifier-free guidance, side by side.

``python benchmarks/conditioning.py [--out benchmarks/results] [--quick]`` (or
``make bench-conditioning``). For each guidance mode, with default training:

1. **Held-out PBMC split** (the fidelity benchmark's seed-0 split: 70% training cells, 30% held
   out, by cell type): for every guidance scale on a grid, as many cells as the test split has
   in its cell-type composition, scored by :func:`scvi_diffusion.metrics.evaluate` against the
   test cells (MMD, W2, k-NN AUC, conditional accuracy) beside the floor.
2. **Two factors, one combination unseen**: :func:`scvi_diffusion.data.pbmc68k_two_factor`
   (a 50-gene program multiplied by 4 in a random half of the cells, ``tissue="stimulated"``)
   with every stimulated ``CD19+ B`` cell held out of training. For every scale, 300 cells of
   the unseen combination: accuracy of logistic regressions trained on the real training cells
   at calling their cell type and tissue (next to the held-out real cells' own accuracy), the
   program's mean log fold change against the real control B cells (next to the truth), and
   MMD/W2 to the held-out real cells (next to the real control B cells', which is what
   ignoring the tissue would give).
3. **Gradient Interpolation** ``CD34+`` -> ``CD14+ Monocyte`` (550 cells, 11 weights) with the
   split's model: :func:`scvi_diffusion.metrics.trajectory_progress`.

Writes ``conditioning_runs.csv`` and ``conditioning.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scvi
import torch
from _common import QUIET, split_with_reference, timed_train, two_factor_held_out

import scvi_diffusion
from scvi_diffusion import ScDiffusion
from scvi_diffusion.metrics import (
    conditional_accuracy,
    evaluate,
    mmd_rbf,
    shared_space,
    trajectory_progress,
    wasserstein2,
)

warnings.filterwarnings("ignore")

MODES = ("classifier", "classifier_free")
SCALES = {
    "classifier": (0.0, 1.0, 2.0, 4.0, 8.0),
    "classifier_free": (0.0, 1.0, 1.5, 2.0, 3.0, 5.0),
}
HELD_OUT = {"cell_type": "CD19+ B", "tissue": "stimulated"}
TRAJECTORY = ("CD34+", "CD14+ Monocyte")
SEED = 0


def train_model(adata, mode: str, quick: bool, **setup) -> tuple[ScDiffusion, float]:
    scvi.settings.seed = SEED
    adata = adata.copy()
    ScDiffusion.setup_anndata(adata, **setup)
    model = ScDiffusion(adata, guidance=mode)
    return model, timed_train(model, max_epochs=3 if quick else None, **QUIET)


def mean_log_expression(adata, genes) -> np.ndarray:
    counts = adata[:, genes].X
    counts = counts.toarray() if hasattr(counts, "toarray") else np.asarray(counts)
    library = np.asarray(adata.X.sum(axis=1)).reshape(-1, 1)
    return np.log1p(counts / np.maximum(library, 1) * 1e4).mean(axis=0)


def held_out_split(quick: bool) -> list[dict]:
    data = scvi_diffusion.data.pbmc68k()
    train, test, reference = split_with_reference(data, SEED)
    rows = []
    for mode in MODES:
        model, seconds = train_model(train, mode, quick, cell_type_key="cell_type")
        for scale in SCALES[mode]:
            started = time.perf_counter()
            syn = model.generate(
                conditions=test.obs[["cell_type"]],
                guidance_scale=scale,
                seed=SEED,
                progress_bar=False,
            )
            generate_seconds = time.perf_counter() - started
            overall = evaluate(
                test,
                syn,
                condition_key="cell_type",
                reference=reference,
                random_state=SEED,
                n_repeats=0,  # the figures only, not the floor's spread
            ).loc["all"]
            row = {
                "experiment": "held-out split",
                "guidance": mode,
                "scale": scale,
                "train_seconds": seconds,
                "generate_seconds": generate_seconds,
            }
            for metric in ("mmd", "w2", "knn_auc", "conditional_accuracy", "mean_spearman"):
                row[metric] = overall.loc[metric, "synthetic"]
                row[f"{metric}_floor"] = overall.loc[metric, "floor"]
            rows.append(row)
            print(row, flush=True)
        progress = trajectory_progress(train, trajectory(model), "cell_type")
        rows.append(
            {
                "experiment": "trajectory",
                "guidance": mode,
                "scale": np.nan,
                "spearman_axis_position": progress.attrs["spearman_axis_position"],
                "spearman_pseudotime": progress.attrs["spearman_pseudotime"],
                "source_fraction_at_0": progress["source_fraction"].iloc[0],
                "target_fraction_at_1": progress["target_fraction"].iloc[-1],
                "axis_position_at_0": progress["axis_position"].iloc[0],
                "axis_position_at_1": progress["axis_position"].iloc[-1],
            }
        )
        print(progress.round(3).to_string(), flush=True)
    return rows


def trajectory(model):
    return model.generate(
        n=550, interpolate={"cell_type": TRAJECTORY}, n_points=11, seed=SEED, progress_bar=False
    )


def two_factor(quick: bool) -> list[dict]:
    data, held, train, held_out, control_b = two_factor_held_out(HELD_OUT)
    program = data.var_names[data.var["program_gene"].to_numpy()]
    true_lfc = mean_log_expression(held_out, program) - mean_log_expression(control_b, program)
    real_accuracy = {
        key: conditional_accuracy(train, held_out, key, average="micro") for key in HELD_OUT
    }
    # distances in the PCA of all real cells; the nearest seen combination as the baseline
    space = shared_space(data, control_b)
    rows_held = held.to_numpy()
    baseline = {
        "mmd": mmd_rbf(space.real_pca[rows_held], space.synthetic_pca)["mmd"],
        "w2": wasserstein2(space.real_pca[rows_held], space.synthetic_pca),
    }
    rows = []
    for mode in MODES:
        model, seconds = train_model(
            train, mode, quick, cell_type_key="cell_type", tissue_key="tissue"
        )
        for scale in SCALES[mode]:
            syn = model.generate(
                n=300, conditions=HELD_OUT, guidance_scale=scale, seed=SEED, progress_bar=False
            )
            lfc = mean_log_expression(syn, program) - mean_log_expression(control_b, program)
            space = shared_space(data, syn)
            row = {
                "experiment": "unseen combination",
                "guidance": mode,
                "scale": scale,
                "train_seconds": seconds,
                "program_lfc": float(lfc.mean()),
                "program_lfc_true": float(true_lfc.mean()),
                "program_up_fraction": float((lfc > 0).mean()),
                "mmd": mmd_rbf(space.real_pca[rows_held], space.synthetic_pca)["mmd"],
                "w2": wasserstein2(space.real_pca[rows_held], space.synthetic_pca),
                "mmd_control_b": baseline["mmd"],
                "w2_control_b": baseline["w2"],
            }
            for key in HELD_OUT:
                row[f"{key}_accuracy"] = conditional_accuracy(train, syn, key, average="micro")
                row[f"{key}_accuracy_real"] = real_accuracy[key]
            rows.append(row)
            print(row, flush=True)
    return rows


def summarize(runs: pd.DataFrame) -> str:
    def table(frame: pd.DataFrame, columns: list[str]) -> str:
        header = "| " + " | ".join(columns) + " |"
        lines = [header, "|" + "---|" * len(columns)]
        for _, row in frame.iterrows():
            cells = []
            for column in columns:
                value = row[column]
                cells.append(f"{value:.3f}" if isinstance(value, float) else str(value))
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    split = runs[runs["experiment"] == "held-out split"]
    unseen = runs[runs["experiment"] == "unseen combination"]
    traj = runs[runs["experiment"] == "trajectory"]
    parts = [
        "# Conditioning benchmark (classifier vs classifier-free guidance)",
        "",
        "## Held-out PBMC split (seed 0): fidelity vs guidance scale",
        "",
        table(
            split,
            [
                "guidance",
                "scale",
                "mmd",
                "w2",
                "knn_auc",
                "conditional_accuracy",
                "mean_spearman",
                "generate_seconds",
                "train_seconds",
            ],
        ),
        "",
        "Floor (real training cells): "
        + ", ".join(
            f"{m} {split[f'{m}_floor'].iloc[0]:.3f}"
            for m in ("mmd", "w2", "knn_auc", "conditional_accuracy")
        ),
        "",
        f"## Unseen combination {HELD_OUT} (two-factor PBMC)",
        "",
        table(
            unseen,
            [
                "guidance",
                "scale",
                "cell_type_accuracy",
                "tissue_accuracy",
                "program_lfc",
                "program_up_fraction",
                "mmd",
                "w2",
            ],
        ),
        "",
        "Held-out real cells' own accuracy: cell type "
        f"{unseen['cell_type_accuracy_real'].iloc[0]:.3f}, tissue "
        f"{unseen['tissue_accuracy_real'].iloc[0]:.3f}; true program log fold change "
        f"{unseen['program_lfc_true'].iloc[0]:.3f}; real control B cells to the held-out cells: "
        f"MMD {unseen['mmd_control_b'].iloc[0]:.3f}, W2 {unseen['w2_control_b'].iloc[0]:.3f}.",
        "",
        f"## Gradient Interpolation {TRAJECTORY[0]} -> {TRAJECTORY[1]}",
        "",
        table(
            traj,
            [
                "guidance",
                "spearman_axis_position",
                "spearman_pseudotime",
                "source_fraction_at_0",
                "target_fraction_at_1",
                "axis_position_at_0",
                "axis_position_at_1",
            ],
        ),
    ]
    return "\n".join(parts) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--quick", action="store_true", help="3 epochs per stage (smoke test)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    runs = pd.DataFrame(held_out_split(args.quick) + two_factor(args.quick))
    args.out.mkdir(parents=True, exist_ok=True)
    runs.to_csv(args.out / "conditioning_runs.csv", index=False)
    summary = summarize(runs)
    (args.out / "conditioning.md").write_text(summary)
    print(summary)


if __name__ == "__main__":
    main()
