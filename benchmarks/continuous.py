"""Continuous conditions on real data: a donor age left out of training, generated back.

``python benchmarks/continuous.py [--holdouts 21-22 38-44] [--seeds 0 1 2]
[--train-kwargs '{"vae_epochs": 5, "diffusion_steps": 200}']``, or
``make bench-continuous``. Pancreatic acinar cells (``../shared/data``, Smart-seq2, eight
donors aged 1 to 54; each donor has one age). For each held-out age group and seed:

- the donors of the group (21 and 22 years, or 38 and 44) are left out entirely; the other
  cells are split 70/30 by donor into training and test cells;
- two models train on the same training cells with the defaults: one with the age as a
  continuous condition (``continuous_condition_keys=["donor_age"]``), one with the donor as a
  categorical condition (``condition_keys=["donor_id"]``);
- every set below is projected into one :func:`~scvi_diffusion.metrics.shared_space` fit on
  the training cells (none of the compared cells fits it) and compared with the held-out
  donors' real cells by RBF-MMD (:func:`~scvi_diffusion.metrics.mmd_rbf`, bandwidths from the
  held-out cells) and W2 (:func:`~scvi_diffusion.metrics.wasserstein2`, every set drawn down to
  the smallest set's size, mean over 20 draws, since W2 grows as sets shrink):

  - ``continuous``: the continuous model at the held-out cells' own ages;
  - ``real {group}``: the real test cells of each neighbouring age group;
  - ``pooled all seen ages``: the real test cells of every seen age (no model of age at all);
  - ``interpolation {a}->{b} w``: Gradient Interpolation of the categorical model between the
    nearest donors on either side, both ways, at weights 0, 0.1, ..., 1 (the best of them is
    the baseline: an oracle choice of weight);
- seen ages: both models generate the test cells' conditions, scored against the test cells by
  :func:`~scvi_diffusion.metrics.evaluate` (k-NN AUC, MMD, W2, donor accuracy) beside the
  floor (real training cells in the test cells' composition);
- ordering: the continuous model sweeps the age from 1 to 54 in 11 values; Spearman of the
  requested age against the cells' position along the real cells' age
  (:func:`~scvi_diffusion.metrics.value_progress`, all real cells) and the same for real cells.

Appends one JSON line per row to ``--out`` (default
``benchmarks/results/continuous_runs.jsonl``) and rewrites ``continuous.md`` beside it (mean and
spread over seeds). ``--summarize-only`` rewrites the table without training.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scvi
from _common import QUIET, SHARED_DATA, machine_line, timed_train

from scvi_diffusion import ScDiffusion
from scvi_diffusion.metrics import (
    evaluate,
    matched_sample,
    mmd_rbf,
    shared_space,
    stratified_split,
    value_progress,
    wasserstein2,
)

warnings.filterwarnings("ignore")

ACINAR = SHARED_DATA / "acinar_donor_age_smartseq2.h5ad"
VALUE = "donor_age"
DONOR = "donor_id"
# donors of neighbouring ages form one group; a held-out group leaves all its donors out
GROUPS = {1.0: "1", 5.0: "5-6", 6.0: "5-6", 21.0: "21-22", 22.0: "21-22", 38.0: "38-44"}
GROUPS |= {44.0: "38-44", 54.0: "54"}
ORDER = ("1", "5-6", "21-22", "38-44", "54")
HOLDOUTS = ("21-22", "38-44")
TEST_SIZE = 0.3
N_POINTS = 11
W2_DRAWS = 20
SEEN_METRICS = ("knn_auc", "mmd", "w2", "conditional_accuracy")


def load() -> ad.AnnData:
    """The acinar cells with their age group in ``obs['age_group']``."""
    adata = ad.read_h5ad(ACINAR)
    adata.obs["age_group"] = pd.Categorical(adata.obs[VALUE].map(GROUPS), categories=ORDER)
    return adata


def neighbours(holdout: str) -> tuple[str, str]:
    """The age groups on either side of ``holdout``."""
    position = ORDER.index(holdout)
    return ORDER[position - 1], ORDER[position + 1]


def nearest_donors(adata: ad.AnnData, holdout: str) -> tuple[str, str]:
    """The donors nearest in age below and above the held-out group."""
    ages = adata.obs.groupby(DONOR, observed=True)[VALUE].first()
    held = ages[ages.map(GROUPS) == holdout]
    below = ages[ages < held.min()].idxmax()
    above = ages[ages > held.max()].idxmin()
    return str(below), str(above)


def mean_w2(target: np.ndarray, cells: np.ndarray, size: int, seed: int) -> float:
    """W2 from ``target`` to ``size`` cells of ``cells`` drawn without replacement, averaged
    over draws (one when ``cells`` has exactly ``size``)."""
    rng = np.random.default_rng(seed)
    draws = 1 if len(cells) == size else W2_DRAWS
    return float(
        np.mean(
            [
                wasserstein2(target, cells[rng.choice(len(cells), size, replace=False)])
                for _ in range(draws)
            ]
        )
    )


def trained(
    train: ad.AnnData, seed: int, train_kwargs: dict, **setup
) -> tuple[ScDiffusion, float]:
    """A model on a copy of ``train`` registered with ``setup``, and its training seconds."""
    train = train.copy()
    ScDiffusion.setup_anndata(train, **setup)
    scvi.settings.seed = seed
    model = ScDiffusion(train)
    return model, timed_train(model, **QUIET, **train_kwargs)


def held_out_rows(adata, held, test, continuous, categorical, holdout: str, seed: int):
    """MMD and W2 to the held-out donors' cells of every candidate set."""
    sets = {
        "continuous": continuous.generate(
            conditions=held.obs[[VALUE]], seed=seed, progress_bar=False
        )
    }
    for group in neighbours(holdout):
        sets[f"real {group}"] = test[test.obs["age_group"] == group]
    # what a user has without any model of age: the real cells of every seen age
    sets["pooled all seen ages"] = test
    below, above = nearest_donors(adata, holdout)
    for start, end in ((below, above), (above, below)):
        swept = categorical.generate(
            n=held.n_obs * N_POINTS,
            interpolate={DONOR: (start, end)},
            n_points=N_POINTS,
            seed=seed,
            progress_bar=False,
        )
        for weight, cells in swept.obs.groupby("interpolation_weight", observed=True):
            sets[f"interpolation {start}->{end} {weight:.1f}"] = swept[cells.index]
    names = list(sets)
    pooled = ad.concat(
        [held, *(sets[name] for name in names)],
        label="set",
        keys=["held-out", *names],
        index_unique="-",
    )
    space = shared_space(continuous.adata, pooled)
    coordinates = {
        name: space.synthetic_pca[(pooled.obs["set"] == name).to_numpy()]
        for name in ["held-out", *names]
    }
    target = coordinates.pop("held-out")
    size = min(len(points) for points in coordinates.values())
    rows = []
    for name, points in coordinates.items():
        kind = name.split(" ")[0]
        rows.append(
            {
                "part": "held-out",
                "set": name,
                "kind": kind,
                "n_cells": len(points),
                "mmd": mmd_rbf(target, points, reference=target)["mmd"],
                "w2": mean_w2(target, points, size, seed),
                "w2_size": size,
            }
        )
    return rows


def seen_rows(train, test, continuous, categorical, seed: int):
    """Both models at the test cells' conditions, and the floor, against the test cells."""
    reference = matched_sample(train, test, DONOR, random_state=seed)
    cells = {
        "continuous": continuous.generate(
            conditions=test.obs[[VALUE]], seed=seed, progress_bar=False
        ),
        "categorical": categorical.generate(
            conditions=test.obs[[DONOR]], seed=seed, progress_bar=False
        ),
    }
    # the continuous model's cells are scored by donor like the categorical model's
    donors = test.obs.groupby(VALUE, observed=True)[DONOR].first()
    ages = cells["continuous"].obs[VALUE]
    cells["continuous"].obs[DONOR] = pd.Categorical(
        ages.map(donors), categories=test.obs[DONOR].cat.categories
    )
    rows = []
    for name, synthetic in cells.items():
        frame = evaluate(
            test, synthetic, DONOR, reference=reference, random_state=seed, n_repeats=0
        ).loc["all"]
        rows.append(
            {"part": "seen", "set": name, "kind": name}
            | {metric: float(frame.loc[metric, "synthetic"]) for metric in SEEN_METRICS}
        )
    # the floor (reference against test) is the same in both evaluations
    rows.append(
        {"part": "seen", "set": "floor", "kind": "floor"}
        | {metric: float(frame.loc[metric, "floor"]) for metric in SEEN_METRICS}
    )
    return rows


def ordering_row(adata, continuous, seed: int):
    """Spearman of the swept age against the generated cells' position, and the real floor."""
    low, high = float(adata.obs[VALUE].min()), float(adata.obs[VALUE].max())
    swept = continuous.generate(
        n=40 * N_POINTS,
        interpolate={VALUE: (low, high)},
        n_points=N_POINTS,
        seed=seed,
        progress_bar=False,
    )
    progress = value_progress(adata, swept, VALUE, random_state=seed)
    positions = progress["position"].dropna()
    return {
        "part": "ordering",
        "set": "continuous",
        "kind": "continuous",
        "spearman": progress.attrs["spearman"],
        "floor_spearman": progress.attrs["floor_spearman"],
        "positions": json.dumps({f"{v:g}": round(float(p), 2) for v, p in positions.items()}),
    }


def run(holdout: str, seed: int, out: Path, train_kwargs: dict | None = None) -> None:
    adata = load()
    is_held = (adata.obs["age_group"] == holdout).to_numpy()
    held = adata[is_held].copy()
    seen = adata[~is_held].copy()
    seen.obs[DONOR] = seen.obs[DONOR].cat.remove_unused_categories()
    train, test = stratified_split(seen, DONOR, test_size=TEST_SIZE, random_state=seed)
    train_kwargs = train_kwargs or {}
    continuous, continuous_seconds = trained(
        train, seed, train_kwargs, continuous_condition_keys=[VALUE]
    )
    categorical, categorical_seconds = trained(train, seed, train_kwargs, condition_keys=[DONOR])
    started = time.perf_counter()
    rows = held_out_rows(adata, held, test, continuous, categorical, holdout, seed)
    rows += seen_rows(train, test, continuous, categorical, seed)
    rows.append(ordering_row(adata, continuous, seed))
    common = {
        "holdout": holdout,
        "seed": seed,
        "n_train": train.n_obs,
        "n_test": test.n_obs,
        "n_held_out": held.n_obs,
        "continuous_train_seconds": continuous_seconds,
        "categorical_train_seconds": categorical_seconds,
        "score_seconds": time.perf_counter() - started,
        "train_kwargs": json.dumps(train_kwargs),
        "machine": machine_line(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as handle:
        for row in rows:
            handle.write(json.dumps(common | row) + "\n")
    print(f"{holdout} seed {seed}: {len(rows)} rows", flush=True)


def _cell(values: pd.Series, digits: int = 3) -> str:
    values = values.dropna()
    if values.empty:
        return ""
    if len(values) == 1:
        return f"{values.iloc[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def _held_out_table(frame: pd.DataFrame) -> list[str]:
    """Continuous, each real neighbouring group and the best interpolation (by MMD, per seed)."""
    interpolation = frame[frame["kind"] == "interpolation"]
    best = interpolation.loc[interpolation.groupby("seed")["mmd"].idxmin()]
    rows = [
        ("continuous model at the held-out ages", frame[frame["kind"] == "continuous"]),
        *(
            (f"real cells aged {name.removeprefix('real ')}", group)
            for name, group in frame[frame["kind"] == "real"].groupby("set", sort=False)
        ),
        ("Gradient Interpolation at its best weight", best),
        ("real cells of all seen ages, pooled", frame[frame["kind"] == "pooled"]),
    ]
    lines = [
        "| cells | n | MMD to the held-out cells | W2 (equal sizes) |",
        "|---|---|---|---|",
    ]
    for name, group in rows:
        n = f"{group['n_cells'].min():g}-{group['n_cells'].max():g}"
        lines.append(f"| {name} | {n} | {_cell(group['mmd'], 4)} | {_cell(group['w2'], 2)} |")
    choices = ", ".join(best["set"].str.removeprefix("interpolation "))
    lines += ["", f"Best interpolation per seed (donors, weight): {choices}."]
    return lines


def summarize(runs: pd.DataFrame) -> str:
    """Markdown: per held-out group, the held-out, seen and ordering tables over seeds."""
    lines = ["# Continuous conditions: a donor age left out", "", "Written by "]
    lines[-1] += "`benchmarks/continuous.py`; mean ± sd over seeds."
    for holdout, frame in runs.groupby("holdout", sort=False):
        seeds = ",".join(str(s) for s in sorted(frame["seed"].unique()))
        lines += ["", f"## Donors aged {holdout} held out (seeds {seeds})", ""]
        lines += _held_out_table(frame[frame["part"] == "held-out"])
        seen = frame[frame["part"] == "seen"]
        lines += ["", "| seen ages | " + " | ".join(SEEN_METRICS) + " |"]
        lines.append("|---|" + "---|" * len(SEEN_METRICS))
        for name, group in seen.groupby("set", sort=False):
            values = " | ".join(_cell(group[metric]) for metric in SEEN_METRICS)
            lines.append(f"| {name} | {values} |")
        ordering = frame[frame["part"] == "ordering"]
        lines += [
            "",
            f"Ordering over an 11-value sweep of the age: Spearman "
            f"{_cell(ordering['spearman'])} (real cells {_cell(ordering['floor_spearman'])}).",
        ]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--holdouts", nargs="+", default=list(HOLDOUTS), choices=HOLDOUTS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/continuous_runs.jsonl")
    )
    parser.add_argument("--train-kwargs", type=json.loads, default={})
    parser.add_argument("--summarize-only", action="store_true")
    args = parser.parse_args()
    if not args.summarize_only:
        for seed in args.seeds:
            for holdout in args.holdouts:
                run(holdout, seed, args.out, args.train_kwargs)
    runs = pd.read_json(args.out, lines=True)
    args.out.with_name(args.out.stem.removesuffix("_runs") + ".md").write_text(summarize(runs))


if __name__ == "__main__":
    main()
