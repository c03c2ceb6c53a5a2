"""The denoiser's width against its step cost, held-out fidelity and held-out combinations.

``python benchmarks/denoiser_width.py [--widths 256 160 128] [--seeds 0 1 2]
[--datasets pbmc68k pbmc3k two_factor] [--out DIR]``. For every dataset and seed: the
fidelity protocol's split (30% of the bundled PBMCs held out; PBMC3K: the labelled cells and
the genes detected in at least 30 of them, 20% held out), the VAE trained once at its default,
then one default denoiser per width (``ScDiffusion(denoiser_width=...)``, the same VAE weights,
4,000 steps), timed. Each is scored:

- ``pbmc68k``, ``pbmc3k``: the test cells' composition generated twice (two generation
  seeds, averaged) and scored by :func:`scvi_diffusion.metrics.evaluate` against the held-out
  cells;
- ``two_factor``: :func:`scvi_diffusion.data.pbmc68k_two_factor` without its stimulated
  ``CD19+ B`` cells; counterfactuals of the control B cells made stimulated (the default start
  time search) and new cells of the held-out combination, scored as in
  ``tests/generation/test_counterfactual.py``: the share called B cells and called stimulated
  by classifiers trained on the real training cells, the R^2 of mean log expression over the
  100 genes that change most (:func:`~scvi_diffusion.metrics.counterfactual_scores`) and the
  program's mean log fold change as a share of the true one.

Writes ``denoiser_width_runs.csv`` and ``denoiser_width.md`` to ``--out``.
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
from _common import (
    QUIET,
    fidelity_dataset,
    held_out_floor,
    held_out_scores,
    machine_line,
    split_with_reference,
    two_factor_held_out,
)

from scvi_diffusion import ScDiffusion
from scvi_diffusion.data._two_factor import PROGRAM_KEY
from scvi_diffusion.metrics import conditional_accuracy, counterfactual_scores

warnings.filterwarnings("ignore")

METRICS = ("knn_auc", "w2", "mmd", "conditional_accuracy", "mean_spearman")
HELD_OUT = {"cell_type": "CD19+ B", "tissue": "stimulated"}


def with_width(base: ScDiffusion, width: int | None) -> ScDiffusion:
    """A model on ``base``'s cells with a denoiser of ``width``, ``base``'s trained VAE."""
    model = ScDiffusion(base.adata, denoiser_width=width)
    model.module.autoencoder.load_state_dict(base.module.autoencoder.state_dict())
    model.trained_stages_ = ["vae"]
    model.history_ = dict(base.history_)
    return model


def trained_on_one_vae(adata, keys: dict, seed: int, settings: dict):
    """One model per setting on ``adata`` (conditions ``keys``), sharing one trained VAE; the
    seconds of each denoiser stage. ``settings`` maps a label to the denoiser's width (None:
    the default) and further ``train()`` keyword arguments of its stage."""
    scvi.settings.seed = seed
    ScDiffusion.setup_anndata(adata, **keys)
    base = ScDiffusion(adata)
    base.train(stages=["vae"], **QUIET)
    for label, (width, train_kwargs) in settings.items():
        scvi.settings.seed = seed
        model = with_width(base, width)
        started = time.perf_counter()
        model.train(stages=["diffusion"], **train_kwargs, **QUIET)
        yield label, model, time.perf_counter() - started


def fidelity_rows(name: str, variants, seed: int, column: str = "width") -> list[dict]:
    """Held-out fidelity of each model ``variants(adata, keys, seed)`` yields, as
    ``(label, model, denoiser seconds)``; the label goes to ``column``."""
    adata, test_size = fidelity_dataset(name)
    train, test, reference = split_with_reference(adata, seed, test_size=test_size)
    rows = [
        {"dataset": name, "seed": seed, column: "floor"}
        | held_out_floor(test, reference, seed, METRICS)
    ]
    for label, model, seconds in variants(train, {"cell_type_key": "cell_type"}, seed):
        rows.append(
            {"dataset": name, "seed": seed, column: label, "denoiser_s": seconds}
            | held_out_scores(model, test, seed, METRICS)
        )
        print(rows[-1], flush=True)
    return rows


def _log_mean(adata) -> np.ndarray:
    counts = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    normalised = counts / np.maximum(counts.sum(1, keepdims=True), 1) * 1e4
    return np.log1p(normalised).mean(0)


def two_factor_rows(variants, seed: int, column: str = "width") -> list[dict]:
    """Counterfactuals and new cells of the held-out combination, of each model ``variants``
    yields (see :func:`fidelity_rows`)."""
    adata, _, train, truth, source = two_factor_held_out(HELD_OUT)
    program = adata.var[PROGRAM_KEY].to_numpy()
    keys = {"cell_type_key": "cell_type", "tissue_key": "tissue"}
    rows = []
    for label, model, seconds in variants(train, keys, seed):
        cf = model.generate(
            source=source, tissue=HELD_OUT["tissue"], seed=seed, progress_bar=False
        )
        new = model.generate(n=truth.n_obs, **HELD_OUT, seed=seed, progress_bar=False)
        row = {"dataset": "two_factor", "seed": seed, column: label, "denoiser_s": seconds}
        for label, cells in (("cf", cf), ("new", new)):
            requested = ad.AnnData(
                cells.X, obs=pd.DataFrame(HELD_OUT, index=cells.obs_names), var=cells.var
            )
            for key in HELD_OUT:
                row[f"{label}_{key}"] = conditional_accuracy(
                    train, requested, key, average="micro"
                )
        row["cf_r2_top"] = counterfactual_scores(source, cf, truth)["r2_top"]
        change = (_log_mean(cf) - _log_mean(source))[program].mean()
        true_change = (_log_mean(truth) - _log_mean(source))[program].mean()
        row["cf_program_share"] = change / true_change
        rows.append(row)
        print(row, flush=True)
    return rows


def report(runs: pd.DataFrame, title: str = "The denoiser's width", column: str = "width") -> str:
    """Mean ± sd over seeds of every measure, per dataset and ``column``."""
    lines = [f"# {title}\n\n{machine_line()}\n"]
    for dataset, group in runs.groupby("dataset", sort=False):
        columns = [c for c in group.columns if c not in ("dataset", "seed", column)]
        columns = [c for c in columns if group[c].notna().any()]
        lines += [f"## {dataset}\n", f"| {column} | " + " | ".join(columns) + " |"]
        lines.append("|---" * (len(columns) + 1) + "|")
        for label, rows in group.groupby(column, sort=False):
            cells = [
                ""
                if rows[c].isna().all()
                else f"{rows[c].mean():.3f} ± {rows[c].std():.3f}"
                if len(rows) > 1
                else f"{rows[c].mean():.3f}"
                for c in columns
            ]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def run(settings: dict, datasets, seeds, out: Path, name: str, title: str, column: str) -> None:
    """Every setting (see :func:`trained_on_one_vae`) on every dataset and seed; writes
    ``{name}_runs.csv`` (after each seed) and ``{name}.md`` to ``out``."""
    out.mkdir(parents=True, exist_ok=True)

    def variants(adata, keys, seed):
        return trained_on_one_vae(adata, keys, seed, settings)

    rows = []
    for dataset in datasets:
        for seed in seeds:
            if dataset == "two_factor":
                rows += two_factor_rows(variants, seed, column)
            else:
                rows += fidelity_rows(dataset, variants, seed, column)
            pd.DataFrame(rows).to_csv(out / f"{name}_runs.csv", index=False)
    text = report(pd.DataFrame(rows), title, column)
    (out / f"{name}.md").write_text(text + "\n")
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[256, 160, 128])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", default=["pbmc68k", "pbmc3k", "two_factor"])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    settings = {width: (width, {}) for width in args.widths}
    run(
        settings,
        args.datasets,
        args.seeds,
        args.out,
        "denoiser_width",
        "The denoiser's width",
        "width",
    )


if __name__ == "__main__":
    main()
