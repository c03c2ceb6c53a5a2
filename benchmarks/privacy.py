"""Privacy of synthetic cells: do they give away their training cells? Default training on half
of the real cells, audited against the other half, beside positive controls.

``python benchmarks/privacy.py [--datasets pbmc68k pbmc3k acinar] [--seeds 0 1 2]
[--train-kwargs '{"diffusion_steps": 20000}'] [--label overfit]``, or ``make bench-privacy``.
For each dataset and seed: a 50/50 split stratified by cell type (acinar: by donor) into
training and holdout cells; one training on the first half; then
:func:`~scvi_diffusion.metrics.privacy_scores` (one PCA of both real halves) of

- ``generated``: as many new cells as training cells, in the training composition;
- ``noisy copies`` (positive control): each training cell's counts thinned to 90% (binomial)
  and given back 10% Poisson noise at its own expression: copies a little noisier than a
  fresh count draw would be;
- ``real`` (negative control): a third set of real cells is not available at 50/50, so the
  holdout cells' own scores (``holdout_to_train``, ``holdout_memorized_fraction``) stand in.

Appends one JSON line per row to ``--out`` (default ``benchmarks/results/privacy_runs.jsonl``)
and rewrites ``privacy.md`` beside it. ``--summarize-only`` rewrites the table without
training.
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
from _common import PBMC3K, QUIET, SHARED_DATA, machine_line, timed_train
from scipy import sparse

import scvi_diffusion
from scvi_diffusion import ScDiffusion
from scvi_diffusion.metrics import privacy_scores, stratified_split

warnings.filterwarnings("ignore")

DATASETS = {"pbmc68k": "cell_type", "pbmc3k": "cell_type", "acinar": "donor_id"}
COLUMNS = (
    "closest_record_share",
    "expected_closest_record_share",
    "memorized_fraction",
    "holdout_memorized_fraction",
    "synthetic_to_train",
    "holdout_to_train",
)


def load(name: str) -> ad.AnnData:
    if name == "pbmc68k":
        return scvi_diffusion.data.pbmc68k()
    if name == "pbmc3k":
        adata = scvi_diffusion.data.pbmc3k(PBMC3K)
        # the genes of the published protocol: detected in at least 30 cells
        detected = np.asarray((adata.X > 0).sum(axis=0)).ravel() >= 30
        return adata[:, detected].copy()
    return ad.read_h5ad(SHARED_DATA / "acinar_donor_age_smartseq2.h5ad")


def noisy_copies(cells: ad.AnnData, seed: int) -> ad.AnnData:
    """Each cell's counts thinned to 90% and topped up with 10% Poisson noise."""
    rng = np.random.default_rng(seed)
    counts = sparse.csr_matrix(cells.X).astype(np.int64)
    thinned = counts.copy()
    thinned.data = rng.binomial(counts.data, 0.9)
    topped = counts.copy()
    topped.data = rng.poisson(0.1 * counts.data)
    copies = ad.AnnData((thinned + topped).astype(np.float32), obs=cells.obs[[]].copy())
    copies.var_names = cells.var_names
    copies.obs_names = [f"copy_{i}" for i in range(copies.n_obs)]
    return copies


def run(name: str, seed: int, label: str, train_kwargs: dict, out: Path) -> None:
    key = DATASETS[name]
    train, holdout = stratified_split(load(name), key, test_size=0.5, random_state=seed)
    scvi.settings.seed = seed
    model_cells = train.copy()
    ScDiffusion.setup_anndata(model_cells, cell_type_key=key)
    model = ScDiffusion(model_cells)
    train_seconds = timed_train(model, **QUIET, **train_kwargs)
    generated = model.generate(n=train.n_obs, seed=seed, progress_bar=False)
    common = {
        "dataset": name,
        "seed": seed,
        "label": label,
        "train_kwargs": json.dumps(train_kwargs),
        "n_train": train.n_obs,
        "n_holdout": holdout.n_obs,
        "train_seconds": train_seconds,
        "machine": machine_line(),
    }
    rows = []
    for cells, synthetic in (
        ("generated", generated),
        ("noisy copies", noisy_copies(train, seed)),
    ):
        started = time.perf_counter()
        scores = privacy_scores(train, holdout, synthetic)
        rows.append(
            common
            | {"cells": cells, "score_seconds": time.perf_counter() - started}
            | {column: float(scores[column]) for column in COLUMNS}
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    print(f"{name} seed {seed} ({label}): {len(rows)} rows", flush=True)


def _cell(values: pd.Series) -> str:
    values = values.dropna()
    if len(values) == 1:
        return f"{values.iloc[0]:.3f}"
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"


def summarize(runs: pd.DataFrame) -> str:
    lines = ["# Privacy of synthetic cells", "", "Written by `benchmarks/privacy.py`; mean ± sd."]
    lines += ["", "| dataset | label | cells | seeds | " + " | ".join(COLUMNS) + " |"]
    lines.append("|---|---|---|---|" + "---|" * len(COLUMNS))
    for (dataset, label, cells), group in runs.groupby(["dataset", "label", "cells"], sort=False):
        seeds = ",".join(str(s) for s in sorted(group["seed"].unique()))
        values = " | ".join(_cell(group[column]) for column in COLUMNS)
        lines.append(f"| {dataset} | {label} | {cells} | {seeds} | {values} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train-kwargs", type=json.loads, default={})
    parser.add_argument("--label", default="default")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/privacy_runs.jsonl"))
    parser.add_argument("--summarize-only", action="store_true")
    args = parser.parse_args()
    if not args.summarize_only:
        for seed in args.seeds:
            for name in args.datasets:
                run(name, seed, args.label, args.train_kwargs, args.out)
    runs = pd.read_json(args.out, lines=True)
    args.out.with_name(args.out.stem.removesuffix("_runs") + ".md").write_text(summarize(runs))


if __name__ == "__main__":
    main()
