"""Realism over unlike data: generated cells beside the autoencoder's ceiling and the real floor.

``python benchmarks/realism.py [--datasets pbmc68k pbmc3k cellbench acinar] [--seeds 0 1 2]
[--model-kwargs '{"gene_likelihood": "nb"}'] [--train-kwargs '{"vae_epochs": 200}']
[--label nb] [--scales 1.5] [--autoencoder-only]``, or ``make bench-realism``. For each dataset
and seed: one held-out split, one training with the given model and training options (default:
the defaults), then three rows, each scored against the held-out test cells by
:func:`~scvi_diffusion.metrics.evaluate` (with per-gene counts) and
:func:`~scvi_diffusion.metrics.marker_fold_changes`:

- ``floor``: real training cells in the test cells' composition (the reference);
- ``autoencoder``: the same cells encoded (posterior mean, what the denoiser learns) and
  decoded with fresh counts at their own library sizes: the ceiling of any latent generator;
- ``generated``: new cells in the test composition at each guidance scale, with the k-NN AUC
  of their latents against the reference cells' latents (``latent_knn_auc``: the diffusion
  prior's own gap, 0.5 = none).

``--autoencoder-only`` trains the autoencoder alone and writes the first two rows, plus the
autoencoder row for a posterior draw instead of the mean (``autoencoder (draw)``): the probe
of what lifts the ceiling.

The datasets (``../shared/data``, see its README): the bundled PBMCs (10x, 700 cells, 30% held
out), PBMC3K (10x, shallow; CFGen's published 80/20 split of genes in at least 30 cells),
CellBench (five cell lines, deep CEL-seq2 and Drop-seq UMIs, 11.5k genes; conditioned on cell
line and protocol, scored by cell line) and pancreatic acinar cells (Smart-seq2 full-length
read counts, 827 genes, strongly overdispersed; conditioned on donor). Splits hold out 30% of
each stratum (PBMC3K: the published split).

Appends one JSON line per row to ``--out`` (default ``benchmarks/results/realism_runs.jsonl``)
and rewrites the table beside it (``benchmarks/results/realism.md``: means and spread over
seeds) from all its rows.
``--summarize-only`` rewrites the table without training.
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
import torch
from _common import PBMC3K, SHARED_DATA, decoded, machine_line, timed_train

import scvi_diffusion
from scvi_diffusion import ScDiffusion
from scvi_diffusion.data._pbmc3k import published_split
from scvi_diffusion.metrics import (
    evaluate,
    marker_fold_changes,
    matched_sample,
    real_vs_synthetic_auc,
    stratified_split,
)

warnings.filterwarnings("ignore")

DATASETS = ("pbmc68k", "pbmc3k", "cellbench", "acinar")
# Registered conditions (the first is the one scored) and the test share of each stratum.
CONDITIONS = {
    "pbmc68k": ("cell_type",),
    "pbmc3k": ("cell_type",),
    "cellbench": ("cell_line", "protocol"),
    "acinar": ("donor_id",),
}
TEST_SIZE = 0.3
STRATUM = "_stratum"
METRICS = (
    "knn_auc",
    "mmd",
    "w2",
    "conditional_accuracy",
    "variance_log_ratio",
    "zero_fraction_log_ratio",
    "library_size_ks",
)
MARKERS = ("marker_pearson", "marker_slope")


def load(name: str, pbmc3k_path: Path = PBMC3K) -> ad.AnnData:
    """The dataset with a ``_stratum`` column: its registered conditions joined."""
    if name == "pbmc68k":
        adata = scvi_diffusion.data.pbmc68k()
    elif name == "pbmc3k":
        adata = scvi_diffusion.data.pbmc3k(pbmc3k_path)
    elif name == "cellbench":
        adata = ad.read_h5ad(SHARED_DATA / "cellbench_celllines_celseq2_dropseq.h5ad")
    else:
        adata = ad.read_h5ad(SHARED_DATA / "acinar_donor_age_smartseq2.h5ad")
    keys = list(CONDITIONS[name])
    adata.obs[STRATUM] = pd.Categorical(adata.obs[keys].astype(str).agg(":".join, axis=1))
    return adata


def split(name: str, adata: ad.AnnData, seed: int) -> tuple[ad.AnnData, ad.AnnData, ad.AnnData]:
    """Training cells, test cells and the floor's reference, all drawn with ``seed``."""
    if name == "pbmc3k":
        train, test = published_split(adata, seed)
    else:
        train, test = stratified_split(adata, STRATUM, test_size=TEST_SIZE, random_state=seed)
    return train, test, matched_sample(train, test, STRATUM, random_state=seed)


def scores(test: ad.AnnData, cells: ad.AnnData, reference: ad.AnnData, key: str, seed: int):
    """Headline figures of ``cells`` and of the floor (``reference``) against ``test``."""
    overall = evaluate(test, cells, key, reference=reference, random_state=seed, n_repeats=0)
    overall = overall.loc["all"]
    markers = marker_fold_changes(test, cells, key).loc["all"]
    floor_markers = marker_fold_changes(test, reference, key).loc["all"]
    record = {metric: float(overall.loc[metric, "synthetic"]) for metric in METRICS}
    floor = {metric: float(overall.loc[metric, "floor"]) for metric in METRICS}
    for name, column in zip(MARKERS, ("pearson", "slope"), strict=True):
        record[name] = float(markers[column])
        floor[name] = float(floor_markers[column])
    return record, floor


def _decoded_cells(model, latents, reference: ad.AnnData, key: str, seed: int) -> ad.AnnData:
    """``latents`` of the reference cells decoded with fresh counts at their library sizes."""
    counts, _ = decoded(model, latents, reference, seed)
    cells = ad.AnnData(counts, obs=reference.obs[[key]].copy(), var=reference.var[[]])
    cells.obs_names = [f"decoded_{i}" for i in range(cells.n_obs)]
    return cells


def run(
    name: str,
    seed: int,
    model_kwargs: dict,
    label: str,
    scales,
    out: Path,
    train_kwargs: dict | None = None,
    autoencoder_only: bool = False,
) -> None:
    keys = CONDITIONS[name]
    train, test, reference = split(name, load(name), seed)
    scvi.settings.seed = seed
    train = train.copy()
    ScDiffusion.setup_anndata(train, cell_type_key=keys[0], condition_keys=list(keys[1:]) or None)
    model = ScDiffusion(train, **model_kwargs)
    stages = {"stages": ["vae"]} if autoencoder_only else {}
    train_seconds = timed_train(model, enable_progress_bar=False, **stages, **(train_kwargs or {}))
    common = {
        "dataset": name,
        "seed": seed,
        "label": label,
        "model_kwargs": json.dumps(model_kwargs),
        "train_kwargs": json.dumps(train_kwargs or {}),
        "train_seconds": train_seconds,
        "n_train": train.n_obs,
        "n_test": test.n_obs,
        "n_genes": train.n_vars,
    }
    reference_latents = model.get_latent_representation(reference)
    autoencoder = _decoded_cells(model, reference_latents, reference, keys[0], seed)
    record, floor = scores(test, autoencoder, reference, keys[0], seed)
    rows = [
        {"cells": "floor"} | floor,
        {"cells": "autoencoder"} | record,
    ]
    if autoencoder_only:
        torch.manual_seed(seed)
        drawn = model.get_latent_representation(reference, give_mean=False)
        cells = _decoded_cells(model, drawn, reference, keys[0], seed)
        rows.append(
            {"cells": "autoencoder (draw)"} | scores(test, cells, reference, keys[0], seed)[0]
        )
        scales = ()
    for scale in scales:
        started = time.perf_counter()
        cells = model.generate(
            conditions=test.obs[list(keys)],
            guidance_scale=scale,
            seed=seed,
            progress_bar=False,
        )
        generate_seconds = time.perf_counter() - started
        record, _ = scores(test, cells, reference, keys[0], seed)
        latent_auc = real_vs_synthetic_auc(
            reference_latents, cells.obsm["X_latent"], random_state=seed
        )
        rows.append(
            {
                "cells": "generated",
                "guidance_scale": scale,
                "generate_seconds": generate_seconds,
                "latent_knn_auc": latent_auc,
            }
            | record
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as handle:
        for row in rows:
            line = json.dumps(common | row | {"machine": machine_line()})
            handle.write(line + "\n")
            print(line, flush=True)


def _cell(values: pd.Series) -> str:
    values = values.dropna()
    if values.empty:
        return ""
    if len(values) == 1:
        return f"{values.iloc[0]:.3f}"
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"


def summarize(runs: pd.DataFrame) -> str:
    """Markdown tables, one per dataset: mean ± sd over seeds of each row kind per label."""
    columns = ("latent_knn_auc", *METRICS, *MARKERS, "train_seconds")
    lines = ["# Realism over unlike data", "", "Written by `benchmarks/realism.py`.", ""]
    runs = runs.copy()
    runs["guidance_scale"] = runs.get("guidance_scale", np.nan)
    for dataset, frame in runs.groupby("dataset", sort=False):
        lines += [
            f"## {dataset}",
            "",
            "| label | cells | seeds | " + " | ".join(columns) + " |",
            "|---|---|---|" + "---|" * len(columns),
        ]
        keys = ["label", "cells", "guidance_scale"]
        for (label, cells, scale), group in frame.groupby(keys, sort=False, dropna=False):
            name = cells if np.isnan(scale) else f"{cells}, scale {scale:g}"
            values = [_cell(group[c]) if c in group else "" for c in columns]
            seeds = ",".join(str(s) for s in sorted(group["seed"].unique()))
            lines.append(f"| {label} | {name} | {seeds} | " + " | ".join(values) + " |")
        lines.append("")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--model-kwargs", type=json.loads, default={})
    parser.add_argument("--train-kwargs", type=json.loads, default={})
    parser.add_argument("--autoencoder-only", action="store_true")
    parser.add_argument("--label", default="default")
    parser.add_argument("--scales", type=float, nargs="+", default=[None])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/realism_runs.jsonl"))
    parser.add_argument("--summarize-only", action="store_true")
    args = parser.parse_args()
    if not args.summarize_only:
        for seed in args.seeds:
            for name in args.datasets:
                run(
                    name,
                    seed,
                    args.model_kwargs,
                    args.label,
                    args.scales,
                    args.out,
                    args.train_kwargs,
                    args.autoencoder_only,
                )
    runs = pd.read_json(args.out, lines=True)
    # the table sits beside its rows (realism_runs.jsonl -> realism.md), so a probe written to
    # another file never rewrites the defaults' table
    args.out.with_name(args.out.stem.removesuffix("_runs") + ".md").write_text(summarize(runs))


if __name__ == "__main__":
    main()
