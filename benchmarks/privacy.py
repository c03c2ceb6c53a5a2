"""Privacy of synthetic cells: do they give away their training cells? Default training on half
of the real cells, audited against the other half, beside positive controls.

``python benchmarks/privacy.py [--datasets pbmc68k pbmc3k acinar] [--seeds 0 1 2]
[--train-kwargs '{"diffusion_steps": 20000}'] [--model-kwargs '{"dropout_rate": 0.3}']
[--label overfit]``, or ``make bench-privacy``.
For each dataset and seed: a 50/50 split stratified by cell type (acinar: by donor) into
training and holdout cells; one training on the first half; then
:meth:`~scvi_diffusion.ScDiffusion.audit` against the holdout (distances in one PCA of both
real halves; the membership attacks on the model's own per-cell losses) of

- ``generated``: as many new cells as training cells, in the training composition, with
  their fidelity against the holdout cells (:func:`~scvi_diffusion.metrics.evaluate`, group
  "all": MMD, k-NN AUC, W2 and the condition's accuracy);
- ``noisy copies`` (positive control): each training cell's counts thinned to 90% (binomial)
  and given back 10% Poisson noise at its own expression: copies a little noisier than a
  fresh count draw would be;
- ``real`` (negative control): a third set of real cells is not available at 50/50, so the
  holdout cells' own scores (``holdout_to_train``, ``holdout_memorized_fraction``) stand in.

A model trained far past its budget is the other positive control: ``--train-kwargs
'{"diffusion_steps": 16000}' --label overfit``.

``--audit-timing`` instead times :meth:`~scvi_diffusion.ScDiffusion.audit` at scale: 20,000
bootstrapped PBMCs (:func:`~scvi_diffusion.data.pbmc68k_bootstrap`, 2,000 genes) split in two,
a model trained briefly on the first 10,000 (the audit's cost does not depend on the budget),
then three audits against the other 10,000, each generating 10,000 cells; one JSON line with
the seconds of each to ``--timing-out``.

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
from scvi_diffusion.metrics import evaluate, privacy_scores, stratified_split

warnings.filterwarnings("ignore")

DATASETS = {"pbmc68k": "cell_type", "pbmc3k": "cell_type", "acinar": "donor_id"}
COLUMNS = (
    "closest_record_share",
    "expected_closest_record_share",
    "memorized_fraction",
    "holdout_memorized_fraction",
    "synthetic_to_train",
    "holdout_to_train",
    "denoiser_membership_auc",
    "denoiser_membership_tpr_at_1pct_fpr",
    "reconstruction_membership_auc",
    "reconstruction_membership_tpr_at_1pct_fpr",
    "encoder_membership_auc",
    "encoder_membership_tpr_at_1pct_fpr",
    "mmd",
    "knn_auc",
    "w2",
    "conditional_accuracy",
)
FIDELITY = ("mmd", "knn_auc", "w2", "conditional_accuracy")


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


def run(
    name: str, seed: int, label: str, train_kwargs: dict, out: Path, model_kwargs: dict
) -> None:
    key = DATASETS[name]
    train, holdout = stratified_split(load(name), key, test_size=0.5, random_state=seed)
    scvi.settings.seed = seed
    model_cells = train.copy()
    ScDiffusion.setup_anndata(model_cells, cell_type_key=key)
    holdout = holdout.copy()
    model = ScDiffusion(model_cells, **model_kwargs)
    train_seconds = timed_train(model, **QUIET, **train_kwargs)
    generated = model.generate(n=train.n_obs, seed=seed, progress_bar=False)
    common = {
        "dataset": name,
        "seed": seed,
        "label": label,
        "train_kwargs": json.dumps(train_kwargs),
        "model_kwargs": json.dumps(model_kwargs),
        "n_train": train.n_obs,
        "n_holdout": holdout.n_obs,
        "train_seconds": train_seconds,
        "machine": machine_line(),
    }
    distances = ("synthetic_to_train", "holdout_to_train")
    rows = []
    for cells, synthetic in (
        ("generated", generated),
        ("noisy copies", noisy_copies(train, seed)),
    ):
        started = time.perf_counter()
        report = model.audit(holdout, synthetic=synthetic)
        seconds = time.perf_counter() - started
        row = common | {"cells": cells, "audit_seconds": seconds}
        row |= {check: float(value) for check, value in report["value"].items()}
        row["expected_closest_record_share"] = float(
            report.loc["closest_record_share", "reference"]
        )
        row["holdout_memorized_fraction"] = float(report.loc["memorized_fraction", "reference"])
        row |= {f"verdict ({k})": v for k, v in report.attrs["verdict"].items()}
        # the distances themselves, from the same space as the audit's
        scores = privacy_scores(train, holdout, synthetic)
        row |= {column: float(scores[column]) for column in distances}
        if cells == "generated":
            fidelity = evaluate(holdout, synthetic, condition_key=key, n_repeats=0)
            row |= {m: float(fidelity.loc[("all", m), "synthetic"]) for m in FIDELITY}
        rows.append(row)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    print(f"{name} seed {seed} ({label}): {len(rows)} rows", flush=True)


def audit_timing(out: Path, repeats: int = 3) -> None:
    """Seconds of ``audit`` with 10,000 training, holdout and synthetic cells."""
    cells = scvi_diffusion.data.pbmc68k_bootstrap(n_obs=20_000, n_vars=2_000, seed=0)
    train, holdout = cells[:10_000].copy(), cells[10_000:].copy()
    scvi.settings.seed = 0
    ScDiffusion.setup_anndata(train, cell_type_key="cell_type")
    model = ScDiffusion(train)
    model.train(max_epochs=2, **QUIET)
    seconds = []
    for repeat in range(repeats):
        started = time.perf_counter()
        report = model.audit(holdout, seed=repeat, progress_bar=False)
        seconds.append(time.perf_counter() - started)
        print(f"audit {repeat}: {seconds[-1]:.1f} s", flush=True)
    row = {
        "n_train": train.n_obs,
        "n_holdout": holdout.n_obs,
        "n_synthetic": train.n_obs,
        "n_vars": train.n_vars,
        "seconds": seconds,
        "checks": len(report),
        "machine": machine_line(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as handle:
        handle.write(json.dumps(row) + "\n")


def _cell(values: pd.Series) -> str:
    values = values.dropna()
    if values.empty:
        return ""
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
    parser.add_argument("--model-kwargs", type=json.loads, default={})
    parser.add_argument("--label", default="default")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/privacy_runs.jsonl"))
    parser.add_argument("--summarize-only", action="store_true")
    parser.add_argument("--audit-timing", action="store_true")
    parser.add_argument(
        "--timing-out", type=Path, default=Path("benchmarks/results/privacy_audit_timing.jsonl")
    )
    args = parser.parse_args()
    if args.audit_timing:
        audit_timing(args.timing_out)
        return
    if not args.summarize_only:
        for seed in args.seeds:
            for name in args.datasets:
                run(name, seed, args.label, args.train_kwargs, args.out, args.model_kwargs)
    runs = pd.read_json(args.out, lines=True)
    args.out.with_name(args.out.stem.removesuffix("_runs") + ".md").write_text(summarize(runs))


if __name__ == "__main__":
    main()
