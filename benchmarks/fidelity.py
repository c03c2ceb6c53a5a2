"""Held-out fidelity: ScDiffusion vs the paper's setup vs scVI sampled from its prior.

``python benchmarks/fidelity.py [--seeds 0 1 2] [--out benchmarks/results]`` (or
``make bench-fidelity``). For every real dataset available offline (the bundled PBMC cells:
scanpy ships no other real count data that loads without a download) and every seed:

1. a 70/30 split of the cells, stratified by cell type;
2. on the 70%, with default settings: ``ScDiffusion`` (scVI autoencoder, default sampler),
   ``ScDiffusion(autoencoder="mlp")`` (the paper's setup: MLP autoencoder, 1000-step DDPM) and
   scVI (``scvi.model.SCVI``) sampled from its prior, ``z ~ N(0, I)`` decoded with library sizes
   drawn from the training cells;
3. each generator makes as many cells as the test split has, in the test split's cell-type
   composition (scVI cannot be asked for a cell type, so it has no conditional accuracy);
4. :func:`scvi_diffusion.metrics.evaluate` scores them against the real test cells beside the
   floor: real training cells drawn in the same composition and number, scored the same way.

Writes ``fidelity_runs.csv`` (every figure of every run) and ``fidelity.md`` (mean and spread
over seeds, and the issue's targets checked) to ``--out``.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scvi
import torch
from scipy import sparse

import scvi_diffusion
from scvi_diffusion import ScDiffusion
from scvi_diffusion.metrics import evaluate, matched_sample, stratified_split

warnings.filterwarnings("ignore")

CONDITION = "cell_type"
REPORTED = (
    "mmd",
    "w2",
    "knn_auc",
    "rf_auc",
    "ilisi",
    "conditional_accuracy",
    "mean_spearman",
    "mean_pearson",
    "variance_spearman",
    "zero_fraction_gene_mae",
    "library_size_ks",
)
GENERATORS = ("ScDiffusion", "paper setup (MLP AE + DDPM-1000)", "scVI prior")


def datasets() -> dict:
    """Real count datasets available offline."""
    return {"pbmc68k": scvi_diffusion.data.pbmc68k()}


def scdiffusion(train, test, seed: int, **model_kwargs):
    train = train.copy()
    ScDiffusion.setup_anndata(train, cell_type_key=CONDITION)
    model = ScDiffusion(train, **model_kwargs)
    started = time.perf_counter()
    model.train(enable_progress_bar=False)
    train_seconds = time.perf_counter() - started
    started = time.perf_counter()
    synthetic = model.generate(conditions=test.obs[[CONDITION]], seed=seed, progress_bar=False)
    return synthetic, train_seconds, time.perf_counter() - started


def scvi_prior(train, test, seed: int):
    train = train.copy()
    scvi.model.SCVI.setup_anndata(train)
    model = scvi.model.SCVI(train)
    started = time.perf_counter()
    model.train(enable_progress_bar=False)
    train_seconds = time.perf_counter() - started
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    n_cells = test.n_obs
    library = np.asarray(train.X.sum(axis=1)).ravel()
    library = library[np.random.default_rng(seed).integers(0, train.n_obs, n_cells)]
    z = torch.randn(n_cells, model.module.n_latent, generator=generator)
    module = model.module.eval()
    with torch.inference_mode():
        px = module.generative(
            z=z,
            library=torch.log(torch.as_tensor(library, dtype=torch.float32)).unsqueeze(-1),
            batch_index=torch.zeros(n_cells, 1, dtype=torch.long),
        )["px"]
        torch.manual_seed(seed)
        counts = px.sample().numpy()
    synthetic = ad.AnnData(
        X=sparse.csr_matrix(counts.astype(np.float32)),
        obs=pd.DataFrame(index=[f"scvi_{i}" for i in range(n_cells)]),
        var=pd.DataFrame(index=train.var_names.copy()),
    )
    return synthetic, train_seconds, time.perf_counter() - started


def run(seeds, out: Path) -> pd.DataFrame:
    rows = []
    for name, adata in datasets().items():
        for seed in seeds:
            scvi.settings.seed = seed
            train, test = stratified_split(adata, CONDITION, test_size=0.3, random_state=seed)
            reference = matched_sample(train, test, CONDITION, random_state=seed)
            generators = {
                GENERATORS[0]: lambda: scdiffusion(train, test, seed),  # noqa: B023
                GENERATORS[1]: lambda: scdiffusion(train, test, seed, autoencoder="mlp"),  # noqa: B023
                GENERATORS[2]: lambda: scvi_prior(train, test, seed),  # noqa: B023
            }
            for generator, make in generators.items():
                synthetic, train_seconds, generate_seconds = make()
                conditional = CONDITION in synthetic.obs
                frame = evaluate(
                    test,
                    synthetic,
                    condition_key=CONDITION if conditional else None,
                    reference=reference,
                    random_state=seed,
                )
                overall = frame.loc["all"]
                record = {
                    "dataset": name,
                    "seed": seed,
                    "generator": generator,
                    "n_train": train.n_obs,
                    "n_test": test.n_obs,
                    "train_seconds": train_seconds,
                    "generate_seconds": generate_seconds,
                    "mmd_bandwidths": " ".join(f"{b:.3g}" for b in frame.attrs["mmd_bandwidths"]),
                }
                for metric in REPORTED:
                    has = metric in overall.index
                    record[metric] = overall.loc[metric, "synthetic"] if has else np.nan
                    record[f"{metric}_floor"] = overall.loc[metric, "floor"] if has else np.nan
                rows.append(record)
                print(
                    f"{name} seed={seed} {generator}: train {train_seconds:.0f}s, "
                    + ", ".join(f"{m}={record[m]:.4g}" for m in REPORTED),
                    flush=True,
                )
    runs = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    runs.to_csv(out / "fidelity_runs.csv", index=False)
    return runs


def summarize(runs: pd.DataFrame) -> str:
    """Markdown: mean ± sd over seeds per generator, the floor, and the targets."""
    lines = []
    for dataset, frame in runs.groupby("dataset", sort=False):
        header = ["generator", *REPORTED, "train s", "generate s"]
        lines += [
            f"### {dataset} ({frame['n_train'].iloc[0]} training / {frame['n_test'].iloc[0]} "
            f"test cells, seeds {sorted(frame['seed'].unique().tolist())})",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
        ]

        def cell(values):
            values = values.dropna()
            if values.empty:
                return "n/a"
            return f"{values.mean():.3f} ± {values.std(ddof=1) if len(values) > 1 else 0:.3f}"

        by_generator = {g: f for g, f in frame.groupby("generator", sort=False)}
        for generator in GENERATORS:
            rows = by_generator[generator]
            metrics = [cell(rows[m]) for m in REPORTED]
            timing = [cell(rows["train_seconds"]), cell(rows["generate_seconds"])]
            lines.append("| " + " | ".join([generator, *metrics, *timing]) + " |")
        floor = by_generator[GENERATORS[0]]
        lines.append(
            "| floor (real train vs test) | "
            + " | ".join(cell(floor[f"{m}_floor"]) for m in REPORTED)
            + " | | |"
        )
        lines.append("")
        lines.append(f"MMD bandwidths (PCA units): {floor['mmd_bandwidths'].iloc[0]} (seed 0).")
        lines.append("")
        ours = by_generator[GENERATORS[0]].mean(numeric_only=True)
        paper = by_generator[GENERATORS[1]].mean(numeric_only=True)
        prior = by_generator[GENERATORS[2]].mean(numeric_only=True)
        targets = {
            "MMD below scVI's and the paper setup's": ours["mmd"]
            < min(prior["mmd"], paper["mmd"]),
            "W2 below scVI's and the paper setup's": ours["w2"] < min(prior["w2"], paper["w2"]),
            "kNN AUC within 0.05 of the floor": abs(ours["knn_auc"] - ours["knn_auc_floor"])
            <= 0.05,
            "conditional accuracy >= 0.9 x floor": ours["conditional_accuracy"]
            >= 0.9 * ours["conditional_accuracy_floor"],
            "mean-expression Spearman >= 0.95": ours["mean_spearman"] >= 0.95,
        }
        lines.append("Targets (means over seeds):")
        lines.append("")
        lines += [f"- {'met' if ok else 'MISSED'}: {name}" for name, ok in targets.items()]
        lines.append("")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    runs = run(args.seeds, args.out)
    summary = summarize(runs)
    (args.out / "fidelity.md").write_text(summary + "\n")
    print(summary)


if __name__ == "__main__":
    main()
