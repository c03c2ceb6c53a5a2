"""Counterfactuals of real cells on data with a known answer.

``python benchmarks/counterfactual.py [--out benchmarks/results] [--seeds 0 1 2] [--quick]``
(or ``make bench-counterfactual``).

:func:`scvi_diffusion.data.pbmc68k_two_factor` (real PBMC counts; a 50-gene program whose
expected counts are multiplied by 4 in a random half of the cells, ``tissue="stimulated"``)
with every stimulated ``CD19+ B`` cell held out of training. The control B cells are turned
into stimulated ones with ``generate(source=control_b, tissue="stimulated")`` and compared
with the held-out real stimulated B cells, and per cell with their own truth: the same cell
with its program genes' counts multiplied by the factor.

For each training seed and guidance mode, at every ``start_time`` on a grid:

- the counterfactuals (DDIM inversion, the method), and the same start noised with fresh
  noise instead of inverted (SDEdit, as Gradient Interpolation starts), as an ablation;
- :func:`scvi_diffusion.metrics.counterfactual_scores` (mean-expression R^2 over all genes
  and the 100 that change most, fold-change slope, each cell against its own source and own
  truth), the program's mean log fold change against the source cells beside the true one,
  the mean absolute log fold change of the other genes, and the accuracy of classifiers
  trained on the real training cells at calling cell type and tissue (beside the held-out
  real cells' own);

and once per model, the baselines: the source cells unchanged, scGen-style latent arithmetic
(the mean latent shift from control to stimulated training cells added to each source cell's
latent, decoded at its library size), and cells generated from scratch for the combination.

Writes ``counterfactual_runs.csv`` and ``counterfactual.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scvi
from _common import QUIET, decoded, machine_line, timed_train, two_factor_held_out

from scvi_diffusion import ScDiffusion
from scvi_diffusion.metrics import conditional_accuracy, counterfactual_scores

warnings.filterwarnings("ignore")

HELD_OUT = {"cell_type": "CD19+ B", "tissue": "stimulated"}
MODES = ("classifier_free", "classifier")
START_TIMES = (100, 200, 400, 600, 800)
SCALES = (None, 1.0)
"""Guidance scales of the counterfactuals: the mode's default, and 1."""
COUNTS = {"coupled": True, "drawn": False}
"""Counts of the counterfactuals: the source cells' moved by the predicted change (the
default), or drawn afresh from the decoder."""


def two_factor_data():
    """Training cells, held-out stimulated B cells, control B source cells and their truths."""
    data, _, train, truth, source = two_factor_held_out(HELD_OUT)
    program = data.var["program_gene"].to_numpy()
    expected = source.X.toarray()
    expected[:, program] *= data.uns["two_factor"]["factor"]
    cell_truth = ad.AnnData(expected, obs=source.obs.copy(), var=source.var.copy())
    return train, truth, source, cell_truth, program


def mean_log_expression(adata) -> np.ndarray:
    counts = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    library = np.maximum(counts.sum(axis=1, keepdims=True), 1)
    return np.log1p(counts / library * 1e4).mean(axis=0)


def scores(cells, train, truth, source, cell_truth, program, expected=None) -> dict:
    """Every score of one set of counterfactuals (one per source cell, in order).

    Each cell is compared with its own source and truth on its counts, and, with
    ``expected`` (the same cells as expected expression, ``output="normalized"``), on that
    too (``expected_*``), where a Poisson draw's noise does not hide which cell it came from.
    """
    row = counterfactual_scores(source, cells, truth, cell_truth=cell_truth).to_dict()
    if expected is not None:
        per_cell = counterfactual_scores(source, expected, truth, cell_truth=cell_truth)
        row.update(
            {
                f"expected_{k}": v
                for k, v in per_cell.items()
                if "correlation" in k or "retrieval" in k
            }
        )
    change = mean_log_expression(cells) - mean_log_expression(source)
    true_change = mean_log_expression(truth) - mean_log_expression(source)
    row["program_lfc"] = float(change[program].mean())
    row["program_lfc_true"] = float(true_change[program].mean())
    row["program_lfc_ratio"] = row["program_lfc"] / row["program_lfc_true"]
    row["other_abs_lfc"] = float(np.abs(change[~program]).mean())
    row["other_abs_lfc_real"] = float(np.abs(true_change[~program]).mean())
    # every method is asked for the held-out combination, whatever its cells' obs say
    requested = pd.DataFrame(HELD_OUT, index=pd.RangeIndex(cells.n_obs).astype(str))
    requested = ad.AnnData(cells.X, obs=requested, var=pd.DataFrame(index=cells.var_names))
    for key in HELD_OUT:
        row[f"{key}_accuracy"] = conditional_accuracy(train, requested, key, average="micro")
    return row


def noised_counterfactuals(model, source, start_time: int, seed: int, output: str):
    """The ablation: the same plan, its start latents noised with fresh noise, not inverted."""
    import inspect
    from dataclasses import replace

    from scvi_diffusion.generation import (
        assemble,
        check_request,
        decode,
        plan_counterfactuals,
        sample,
    )

    parameters = inspect.signature(model.generate).parameters
    arguments = {k: p.default for k, p in parameters.items() if k != "condition_values"}
    arguments |= {"source": source, "start_time": start_time, "output": output, "seed": seed}
    arguments |= {"tissue": HELD_OUT["tissue"], "condition_values": {}}
    request = check_request(model._request_context(), **arguments)
    trained = model._trained_model()
    # the same plan, its start latents noised (inversion None) instead of inverted
    plan = replace(plan_counterfactuals(request, trained), inversion=None)
    classifiers = model._guidance_classifiers(plan, progress_bar=False)
    batches = decode(trained, plan, sample(trained, plan, classifiers, progress_bar=False))
    return assemble(trained, plan, batches, None)


def latent_arithmetic(model, train, source, seed: int, shift: bool = True):
    """scGen's prediction: each source latent plus the mean control-to-stimulated shift, as
    counts and as expected expression; without ``shift``, the autoencoder's reconstruction."""
    latents = model.get_latent_representation()
    stimulated = (train.obs["tissue"] == HELD_OUT["tissue"]).to_numpy()
    rows = train.obs_names.get_indexer(source.obs_names)
    z = latents[rows]
    if shift:
        z = z + latents[stimulated].mean(axis=0) - latents[~stimulated].mean(axis=0)
    counts, fractions = decoded(model, z, source, seed)
    var = source.var.copy()
    return ad.AnnData(counts, var=var), ad.AnnData(fractions, var=var)


def run(seeds, modes, start_times, quick: bool) -> list[dict]:
    train, truth, source, cell_truth, program = two_factor_data()
    common = (train, truth, source, cell_truth, program)
    real = {
        f"{k}_accuracy_real": conditional_accuracy(train, truth, k, average="micro")
        for k in HELD_OUT
    }
    rows = []

    def record(row: dict) -> None:
        row.update(real)
        rows.append(row)
        shown = {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}
        print(shown, flush=True)

    for seed in seeds:
        for mode in modes:
            scvi.settings.seed = seed
            adata = train.copy()
            ScDiffusion.setup_anndata(adata, cell_type_key="cell_type", tissue_key="tissue")
            model = ScDiffusion(adata, guidance=mode)
            seconds = timed_train(model, max_epochs=3 if quick else None, **QUIET)
            base = {"seed": seed, "guidance": mode, "train_seconds": seconds}
            for start_time in start_times:
                for scale in SCALES:
                    generate = {
                        "source": source,
                        "tissue": HELD_OUT["tissue"],
                        "start_time": start_time,
                        "guidance_scale": scale,
                        "seed": seed,
                        "progress_bar": False,
                    }
                    expected = model.generate(output="normalized", **generate)
                    for counts, keep in COUNTS.items():
                        cells = model.generate(keep_source_counts=keep, **generate)
                        record(
                            {
                                **base,
                                "method": "counterfactual",
                                "counts": counts,
                                "start_time": start_time,
                                "scale": cells.uns["scdiffusion"]["guidance_scale"]["tissue"],
                                **scores(cells, *common, expected=expected),
                            }
                        )
                cells, expected = (
                    noised_counterfactuals(model, source, start_time, seed, output)
                    for output in ("counts", "normalized")
                )
                record(
                    {
                        **base,
                        "method": "noised start",
                        "counts": "coupled",
                        "start_time": start_time,
                        "scale": cells.uns["scdiffusion"]["guidance_scale"]["tissue"],
                        **scores(cells, *common, expected=expected),
                    }
                )
            expected = model.generate(
                source=source, seed=seed, output="normalized", progress_bar=False
            )
            for counts, keep in COUNTS.items():
                unchanged = model.generate(
                    source=source, seed=seed, keep_source_counts=keep, progress_bar=False
                )
                record(
                    {
                        **base,
                        "method": "regenerated, no change",
                        "counts": counts,
                        **scores(unchanged, *common, expected=expected),
                    }
                )
            for method, shift in (("latent arithmetic", True), ("autoencoder, no change", False)):
                cells, expected = latent_arithmetic(model, train, source, seed, shift)
                record({**base, "method": method, **scores(cells, *common, expected=expected)})
            scratch = model.generate(
                n=source.n_obs, conditions=HELD_OUT, seed=seed, progress_bar=False
            )
            record({**base, "method": "from scratch", **scores(scratch, *common)})
        record({"seed": seed, "method": "source cells", **scores(source, *common)})
        record(
            {
                "seed": seed,
                "method": "real held-out cells",
                **{
                    k: v
                    for k, v in scores(truth[: source.n_obs], *common).items()
                    if "correlation" not in k and "retrieval" not in k
                },
            }
        )
    return rows


COLUMNS = [
    "r2_all",
    "r2_top",
    "lfc_slope",
    "program_lfc_ratio",
    "other_abs_lfc",
    "cell_type_accuracy",
    "tissue_accuracy",
    "own_source_correlation",
    "other_source_correlation",
    "source_retrieval",
    "own_truth_correlation",
    "other_truth_correlation",
    "truth_retrieval",
    "expected_own_truth_correlation",
    "expected_other_truth_correlation",
    "expected_truth_retrieval",
]


def summarize(runs: pd.DataFrame) -> str:
    """Means over seeds (± sd where there are several), one row per method and start."""
    runs = runs.assign(
        guidance=runs["guidance"].fillna("-"),
        start_time=runs["start_time"].fillna(-1),
        scale=runs["scale"].fillna(-1),
        counts=runs["counts"].fillna("-"),
    )
    runs = runs.reindex(columns=[*runs.columns, *(c for c in COLUMNS if c not in runs)])
    groups = runs.groupby(["guidance", "method", "counts", "start_time", "scale"], sort=False)
    mean, spread = groups[COLUMNS].mean(), groups[COLUMNS].std()
    n = groups.size()
    header = "| guidance | method | counts | start | scale | seeds | " + " | ".join(COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 6)]
    for key in mean.index:
        cells = []
        for column in COLUMNS:
            value, sd = mean.loc[key, column], spread.loc[key, column]
            text = "" if np.isnan(value) else f"{value:.3f}"
            if text and n[key] > 1 and not np.isnan(sd):
                text += f" ± {sd:.3f}"
            cells.append(text)
        start = "" if key[3] < 0 else str(int(key[3]))
        scale = "" if key[4] < 0 else f"{key[4]:g}"
        lines.append(
            f"| {key[0]} | {key[1]} | {key[2]} | {start} | {scale} | {n[key]} | "
            + " | ".join(cells)
            + " |"
        )
    real = runs[["cell_type_accuracy_real", "tissue_accuracy_real"]].iloc[0]
    true_lfc = runs["program_lfc_true"].iloc[0]
    return "\n".join(
        [
            "# Counterfactuals on pbmc68k_two_factor (stimulated CD19+ B held out)",
            "",
            machine_line(),
            "",
            f"Real held-out stimulated B cells: cell-type accuracy {real.iloc[0]:.3f}, tissue "
            f"accuracy {real.iloc[1]:.3f}; true program log fold change {true_lfc:.3f}.",
            "",
            *lines,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--start-times", type=int, nargs="+", default=list(START_TIMES))
    parser.add_argument(
        "--quick", action="store_true", help="3 epochs per stage; checks the script"
    )
    args = parser.parse_args()
    runs = pd.DataFrame(run(args.seeds, args.modes, args.start_times, args.quick))
    args.out.mkdir(parents=True, exist_ok=True)
    runs.to_csv(args.out / "counterfactual_runs.csv", index=False)
    report = summarize(runs)
    (args.out / "counterfactual.md").write_text(report + "\n")
    print(report)


if __name__ == "__main__":
    main()
