"""Where the realism gap comes from: the autoencoder's ceiling, the diffusion prior, guidance.

``python benchmarks/realism_gap.py [--dataset pbmc3k] [--seed 0] [--guidance classifier_free]
[--scales 1 1.5 2] [--model-kwargs '{"n_latent": 20}']``. One split of the fidelity benchmark
(same loading and split), one default training (or with ``--model-kwargs``), then, each scored
against the held-out cells beside the floor by this package's protocol
(:func:`~scvi_diffusion.metrics.evaluate`), CFGen's (:func:`~scvi_diffusion.metrics.cfgen_scores`)
and the marker test (:func:`~scvi_diffusion.metrics.marker_fold_changes`):

- the autoencoder's ceiling: real training cells in the test composition, encoded and decoded
  with their own library sizes (no diffusion), from the posterior mean the denoiser learns
  (``ae_mean``) and from a posterior draw (``ae_draw``);
- generated cells at each guidance scale, with the k-NN AUC of their latents against the same
  training cells' latents (``latent_knn_auc``: the diffusion prior's own gap, 0.5 = none).

Appends one JSON line per row to ``--out`` (default ``benchmarks/results/realism_gap.jsonl``).
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import scvi
import torch
from _common import PBMC3K, timed_train
from fidelity import CONDITION, load, split
from scipy import sparse

from scvi_diffusion import ScDiffusion
from scvi_diffusion.metrics import (
    cfgen_scores,
    evaluate,
    marker_fold_changes,
    real_vs_synthetic_auc,
)

warnings.filterwarnings("ignore")


def scores(test, cells, reference, seed: int) -> dict[str, float]:
    """The three protocols' headline figures, with this package's floor."""
    overall = evaluate(
        test, cells, CONDITION, reference=reference, random_state=seed, n_repeats=0
    ).loc["all"]
    record = {}
    for metric in ("knn_auc", "mmd", "w2", "conditional_accuracy"):
        record[metric] = overall.loc[metric, "synthetic"]
        record[f"{metric}_floor"] = overall.loc[metric, "floor"]
    cfgen = cfgen_scores(test, cells, CONDITION).loc["mean"]
    markers = marker_fold_changes(test, cells, CONDITION).loc["all"]
    return record | {
        "cfgen_w2": cfgen["w2"],
        "cfgen_mmd": cfgen["mmd"],
        "marker_pearson": markers["pearson"],
        "marker_slope": markers["slope"],
    }


def decoded(model: ScDiffusion, reference: ad.AnnData, give_mean: bool, seed: int) -> ad.AnnData:
    """Reference cells encoded and decoded by the autoencoder alone, at their library sizes."""
    torch.manual_seed(seed)
    latents = model.get_latent_representation(reference, give_mean=give_mean)
    library = torch.as_tensor(np.asarray(reference.X.sum(axis=1)).ravel(), dtype=torch.float32)
    counts, _ = model.module.decode(
        torch.as_tensor(latents), library, torch.zeros(len(latents), dtype=torch.long)
    )
    cells = ad.AnnData(
        sparse.csr_matrix(counts.sample().numpy()),
        obs=reference.obs[[CONDITION]].copy(),
        var=reference.var[[]].copy(),
    )
    cells.obs_names = [f"decoded_{i}" for i in range(cells.n_obs)]
    return cells


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="pbmc3k", choices=["pbmc68k", "pbmc3k"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-kwargs", type=json.loads, default={})
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 1.5, 2.0])
    parser.add_argument("--pbmc3k", type=Path, default=PBMC3K)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/realism_gap.jsonl"))
    args = parser.parse_args()

    train, test, reference = split(args.dataset, load(args.dataset, args.pbmc3k), args.seed)
    scvi.settings.seed = args.seed
    ScDiffusion.setup_anndata(train, cell_type_key=CONDITION)
    model = ScDiffusion(train, **args.model_kwargs)
    train_seconds = timed_train(model, enable_progress_bar=False)
    run = {
        "dataset": args.dataset,
        "seed": args.seed,
        "model_kwargs": json.dumps(args.model_kwargs),
        "train_seconds": train_seconds,
    }
    reference_latents = model.get_latent_representation(reference)
    rows = [
        {"cells": f"ae_{'mean' if mean else 'draw'}"}
        | scores(test, decoded(model, reference, mean, args.seed), reference, args.seed)
        for mean in (True, False)
    ]
    for scale in args.scales:
        cells = model.generate(
            conditions=test.obs[[CONDITION]],
            guidance_scale=scale,
            seed=args.seed,
            progress_bar=False,
        )
        latent_auc = real_vs_synthetic_auc(
            reference_latents, cells.obsm["X_latent"], random_state=args.seed
        )
        rows.append(
            {"cells": f"generated, scale {scale:g}", "latent_knn_auc": latent_auc}
            | scores(test, cells, reference, args.seed)
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as handle:
        for row in rows:
            line = json.dumps(
                run | {k: float(v) if isinstance(v, np.floating) else v for k, v in row.items()}
            )
            handle.write(line + "\n")
            print(line, flush=True)


if __name__ == "__main__":
    main()
