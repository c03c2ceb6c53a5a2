"""Real perturbations: held-out combinations and counterfactuals scored against real cells.

``python benchmarks/perturbation.py [--out benchmarks/results] [--seeds 0] [--designs ...]``
(or ``make bench-perturbation``).

Designs (each a factor that changes, a factor that is kept, and the held-out combinations):

- ``glioblastoma``: ``../shared/data/glioblastoma_panobinostat.h5ad``, five patients with a
  vehicle and a panobinostat slice each. For each patient in turn its panobinostat slice is
  held out and the model trains on the other nine slices (conditions ``condition`` and
  ``patient_id``).
- ``glioblastoma_seen``: one model on all ten slices; each patient's control cells are turned
  into treated ones and compared with that patient's real treated slice (a combination seen
  in training).
- ``cellbench``: ``../shared/data/cellbench_celllines_celseq2_dropseq.h5ad``, the 2,000 most
  variable genes; one cell line's Drop-seq cells held out (conditions ``cell_line`` and
  ``protocol``); its CEL-seq2 cells are turned into Drop-seq ones.
- ``two_factor``: :func:`scvi_diffusion.data.pbmc68k_two_factor`, the known-answer case
  (a 50-gene program; stimulated ``CD19+ B`` held out).

For every held-out combination: cells generated from scratch for it, and counterfactuals of
the kept factor's source cells (default settings), against baselines: the source cells
unchanged, the other groups' cells of the target condition, scGen-style latent arithmetic (the
mean latent shift from source to target condition over the other groups, added to each
source cell's latent and decoded at its library size). Scores against the real held-out
cells: each factor's conditional accuracy (logistic regressions trained on the real training
cells), RBF-MMD and W2 in a PCA of all real cells, and
:func:`~scvi_diffusion.metrics.counterfactual_scores` (R^2 of mean log expression over all genes
and the 100 that change most, the fold-change slope over them, each cell against its source)
on log-normalised counts, and the same R^2 and slope on pseudo-bulk expression (each gene's
share of the group's pooled counts), which a difference in sequencing depth between two
slices does not move.

Writes ``perturbation_runs.csv`` and ``perturbation.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import warnings
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scvi
from _common import QUIET, SHARED_DATA, decoded, machine_line, timed_train

import scvi_diffusion
from scvi_diffusion import ScDiffusion
from scvi_diffusion.metrics import (
    conditional_accuracy,
    counterfactual_scores,
    mmd_rbf,
    shared_space,
    wasserstein2,
)
from scvi_diffusion.metrics._counterfactual import _mean_change_scores
from scvi_diffusion.metrics._markers import _log_expression

warnings.filterwarnings("ignore")


@dataclass(frozen=True)
class Design:
    """A perturbation design: ``changed`` goes from ``source_value`` to ``target_value``
    within each group of ``kept``."""

    name: str
    changed: str
    kept: str
    source_value: str
    target_value: str
    groups: tuple[str, ...]
    """The groups of ``kept`` whose target cells are held out in turn."""
    seen: bool = False
    """Train on everything (the combination is seen in training)."""


def glioblastoma() -> ad.AnnData:
    return ad.read_h5ad(SHARED_DATA / "glioblastoma_panobinostat.h5ad")


def cellbench() -> ad.AnnData:
    import scanpy as sc

    adata = ad.read_h5ad(SHARED_DATA / "cellbench_celllines_celseq2_dropseq.h5ad")
    genes = sc.pp.highly_variable_genes(
        adata, n_top_genes=2000, flavor="seurat_v3", inplace=False
    )["highly_variable"]
    return adata[:, genes.to_numpy()].copy()


def two_factor() -> ad.AnnData:
    return scvi_diffusion.data.pbmc68k_two_factor()


PATIENTS = ("PW030", "PW032", "PW034", "PW036", "PW040")
DESIGNS = {
    "glioblastoma": (
        glioblastoma,
        Design("glioblastoma", "condition", "patient_id", "ctrl", "panobinostat", PATIENTS),
    ),
    "glioblastoma_seen": (
        glioblastoma,
        Design(
            "glioblastoma_seen",
            "condition",
            "patient_id",
            "ctrl",
            "panobinostat",
            PATIENTS,
            seen=True,
        ),
    ),
    "cellbench": (
        cellbench,
        Design("cellbench", "protocol", "cell_line", "CEL-seq2", "Drop-seq", ("H1975",)),
    ),
    "two_factor": (
        two_factor,
        Design("two_factor", "tissue", "cell_type", "control", "stimulated", ("CD19+ B",)),
    ),
}


def pseudobulk(adata: ad.AnnData) -> np.ndarray:
    """log1p of each gene's share of the cells' pooled counts, per 10,000."""
    totals = np.asarray(adata.X.sum(axis=0)).ravel()
    return np.log1p(totals / max(totals.sum(), 1.0) * 1e4)


def log_mean(adata: ad.AnnData) -> np.ndarray:
    """Mean log-normalised expression (each cell scaled to 10,000 counts, then log1p)."""
    return _log_expression(adata, adata.var_names, 1e4).mean(axis=0)


def mean_scores(source, cells, truth, expression=log_mean, prefix: str = "") -> dict:
    """The mean-expression scores of :func:`counterfactual_scores` (R^2 over all genes and
    the 100 that change most, the fold-change slope over them) on ``expression`` of each
    set, for cells that need not be one per source cell."""
    scores = _mean_change_scores(expression(source), expression(cells), expression(truth), 100)
    return {f"{prefix}{k}": v for k, v in scores.items()}


def pseudobulk_scores(source, cells, truth) -> dict:
    """:func:`mean_scores` on pseudo-bulk expression, as ``pb_r2_all``, ``pb_r2_top`` and
    ``pb_slope``."""
    scores = mean_scores(source, cells, truth, pseudobulk, "pb_")
    return {
        "pb_r2_all": scores["pb_r2_all"],
        "pb_r2_top": scores["pb_r2_top"],
        "pb_slope": scores["pb_lfc_slope"],
    }


def latent_arithmetic(model, train, source, design: Design, group: str, seed: int):
    """scGen's prediction: each source latent plus the mean latent shift from the source to
    the target condition over the other groups' training cells, decoded at its library."""
    others = train[train.obs[design.kept] != group]
    latents = model.get_latent_representation(others)
    target = (others.obs[design.changed] == design.target_value).to_numpy()
    source_z = model.get_latent_representation(source)
    z = source_z + latents[target].mean(axis=0) - latents[~target].mean(axis=0)
    counts, _ = decoded(model, z, source, seed)
    return ad.AnnData(counts, var=source.var.copy())


def score(cells, data, held, train, truth, source, design: Design, group: str) -> dict:
    """Every score of one set of cells against the real held-out ones."""
    if cells.n_obs == source.n_obs:
        row = counterfactual_scores(source, cells, truth).to_dict()
    else:
        row = mean_scores(source, cells, truth)
    row.update(pseudobulk_scores(source, cells, truth))
    space = shared_space(data, cells)
    rows = np.flatnonzero(held)
    row["mmd"] = mmd_rbf(space.real_pca[rows], space.synthetic_pca)["mmd"]
    row["w2"] = wasserstein2(space.real_pca[rows], space.synthetic_pca)
    requested = pd.DataFrame(
        {design.changed: design.target_value, design.kept: group},
        index=pd.RangeIndex(cells.n_obs).astype(str),
    )
    requested = ad.AnnData(cells.X, obs=requested, var=pd.DataFrame(index=cells.var_names))
    for key in (design.changed, design.kept):
        row[f"{key}_accuracy"] = conditional_accuracy(train, requested, key, average="micro")
    return row


def train_model(train, design: Design, seed: int, quick: bool) -> tuple[ScDiffusion, float]:
    scvi.settings.seed = seed
    adata = train.copy()
    ScDiffusion.setup_anndata(adata, condition_keys=[design.changed, design.kept])
    model = ScDiffusion(adata)
    return model, timed_train(model, max_epochs=3 if quick else None, **QUIET)


def run_design(data, design: Design, seeds, quick: bool) -> list[dict]:
    rows = []
    seen_models = {}
    for seed in seeds:
        for group in design.groups:
            in_group = (data.obs[design.kept] == group).to_numpy()
            held = in_group & (data.obs[design.changed] == design.target_value).to_numpy()
            is_source = in_group & (data.obs[design.changed] == design.source_value).to_numpy()
            train = data if design.seen else data[~held].copy()
            truth, source = data[held].copy(), data[is_source].copy()
            if design.seen and seed in seen_models:
                model, seconds = seen_models[seed]
            else:
                model, seconds = train_model(train, design, seed, quick)
                seen_models[seed] = (model, seconds)
            common = (data, held, train, truth, source, design, group)
            base = {"design": design.name, "group": group, "seed": seed}

            def record(method: str, cells, base=base, common=common, **extra) -> None:
                row = {**base, "method": method, **extra, **score(cells, *common)}
                rows.append(row)
                shown = {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}
                print(shown, flush=True)

            target = {design.changed: design.target_value, design.kept: group}
            record("real held-out cells", truth)
            record("source cells unchanged", source)
            others = train[
                (train.obs[design.kept] != group)
                & (train.obs[design.changed] == design.target_value)
            ]
            draw = np.random.default_rng(seed).choice(
                others.n_obs, min(others.n_obs, truth.n_obs), replace=False
            )
            record("other groups' target cells", others[np.sort(draw)].copy())
            record(
                "latent arithmetic",
                latent_arithmetic(model, train, source, design, group, seed),
            )
            record(
                "from scratch",
                model.generate(n=truth.n_obs, conditions=target, seed=seed, progress_bar=False),
                train_seconds=seconds,
            )
            cells = model.generate(
                source=source,
                conditions={design.changed: design.target_value},
                seed=seed,
                progress_bar=False,
            )
            record(
                "counterfactual",
                cells,
                start_time=cells.uns["scdiffusion"]["counterfactual"]["start_time"],
            )
    return rows


COLUMNS = [
    "accuracy_changed",
    "accuracy_kept",
    "mmd",
    "w2",
    "r2_all",
    "r2_top",
    "lfc_slope",
    "pb_r2_all",
    "pb_r2_top",
    "pb_slope",
    "own_source_correlation",
    "source_retrieval",
    "start_time",
]


def summarize(runs: pd.DataFrame) -> str:
    """Per design: means over groups and seeds (± sd), one row per method; then per group."""
    lines = ["# Real perturbations", "", machine_line(), ""]
    for name, frame in runs.groupby("design", sort=False):
        design = DESIGNS[name][1]
        frame = frame.assign(
            accuracy_changed=frame[f"{design.changed}_accuracy"],
            accuracy_kept=frame[f"{design.kept}_accuracy"],
        )
        frame = frame.reindex(columns=[*frame.columns, *(c for c in COLUMNS if c not in frame)])
        lines += [
            f"## {name} ({design.changed}: {design.source_value} -> {design.target_value}, "
            f"within each {design.kept}; {frame['seed'].nunique()} seed(s))",
            "",
        ]
        views = (("mean over groups", ["method"]), ("per group", ["group", "method"]))
        for label, groups in views:
            grouped = frame.groupby(groups, sort=False)
            mean, spread, n = grouped[COLUMNS].mean(), grouped[COLUMNS].std(), grouped.size()
            lines += [
                f"{label}:",
                "",
                "| " + " | ".join([*groups, *COLUMNS]) + " |",
                "|" + "---|" * (len(groups) + len(COLUMNS)),
            ]
            for key in mean.index:
                keys = key if isinstance(key, tuple) else (key,)
                cells = []
                for column in COLUMNS:
                    value, sd = mean.loc[key, column], spread.loc[key, column]
                    text = "" if np.isnan(value) else f"{value:.3f}"
                    if text and n[key] > 1 and not np.isnan(sd) and label != "per group":
                        text += f" ± {sd:.3f}"
                    cells.append(text)
                lines.append("| " + " | ".join([*map(str, keys), *cells]) + " |")
            lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--designs", nargs="+", default=list(DESIGNS), choices=list(DESIGNS))
    parser.add_argument("--groups", nargs="+", help="only these groups of the kept factor")
    parser.add_argument("--quick", action="store_true", help="3 epochs per stage")
    parser.add_argument(
        "--merge", action="store_true", help="keep the rows of other designs already in --out"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "perturbation_runs.csv"
    # rows of designs not rerun are kept, so that designs can be run one at a time
    kept = pd.read_csv(path) if args.merge and path.is_file() else pd.DataFrame()
    if len(kept):
        kept = kept[~kept["design"].isin(args.designs)]
    for name in args.designs:
        load, design = DESIGNS[name]
        if args.groups:
            design = Design(**{**design.__dict__, "groups": tuple(args.groups)})
        rows = pd.DataFrame(run_design(load(), design, args.seeds, args.quick))
        kept = pd.concat([kept, rows], ignore_index=True)
        kept.to_csv(path, index=False)
    runs = kept
    report = summarize(runs)
    (args.out / "perturbation.md").write_text(report + "\n")
    print(report)


if __name__ == "__main__":
    main()
