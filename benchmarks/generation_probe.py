"""Where generated cells lose to the autoencoder's ceiling: sampler, guidance and library sizes.

``python benchmarks/generation_probe.py [--dataset pbmc3k] [--seed 0] [--generation-seeds 3]``.
One default training on the realism benchmark's split (``benchmarks/realism.py``), then, over
several generation seeds (the spread that one generated set carries):

- ``autoencoder``: the floor's cells encoded and decoded with fresh counts at their own
  library sizes (the realism benchmark's ceiling row), and ``autoencoder, libraries shuffled``:
  the same latents decoded at library sizes permuted within each condition, which is how
  generated cells receive theirs (a training cell of the same conditions drawn at random);
- for each sampler and guidance scale, the generated cells as ``generate`` returns them, and the
  same latents decoded at the library size of their nearest training cell in latent space.

Each row carries the scores of ``benchmarks/realism.py`` and ``latent_spread``: per latent
dimension, the standard deviation of the generated latents within each condition over that of
the floor cells' latents (mean over conditions with over 10 cells), averaged over dimensions,
with the largest dimension beside it (``latent_spread_max``; 1 = the real spread).
Appends one JSON line per row and generation seed to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import scipy.sparse as sp
import scvi
from _common import QUIET, decoded, machine_line, timed_train
from realism import CONDITIONS, DATASETS, load, scores, split
from sklearn.neighbors import NearestNeighbors

from scvi_diffusion import ScDiffusion

warnings.filterwarnings("ignore")

SAMPLERS = (("dpmpp_2m", None), ("ddpm", 1000))
SCALES = (1.0, 1.5)


def within_condition_sd(latents: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per dimension, the latents' standard deviation within each label, averaged over labels."""
    groups = [g for g in np.unique(labels) if (labels == g).sum() > 10]
    return np.mean([latents[labels == g].std(axis=0) for g in groups], axis=0)


def decoded_at(model, latents, library, obs, key: str, var, seed: int) -> ad.AnnData:
    """``latents`` decoded with fresh counts at the given library sizes."""
    source = ad.AnnData(sp.csr_matrix(np.asarray(library, np.float32).reshape(-1, 1)))
    counts, _ = decoded(model, latents, source, seed)
    cells = ad.AnnData(counts, obs=obs[[key]].reset_index(drop=True), var=var)
    cells.obs_names = [f"decoded_{i}" for i in range(cells.n_obs)]
    return cells


def run(name: str, seed: int, generation_seeds: int, out: Path) -> None:
    keys = CONDITIONS[name]
    key = keys[0]
    train, test, reference = split(name, load(name), seed)
    scvi.settings.seed = seed
    train = train.copy()
    ScDiffusion.setup_anndata(train, cell_type_key=key, condition_keys=list(keys[1:]) or None)
    model = ScDiffusion(train)
    train_seconds = timed_train(model, **QUIET)
    var = reference.var[[]]
    reference_latents = model.get_latent_representation(reference)
    reference_library = np.asarray(reference.X.sum(axis=1)).ravel()
    labels = reference.obs[key].to_numpy()
    real_spread = within_condition_sd(reference_latents, labels)
    train_latents = model.get_latent_representation(train)
    train_library = np.asarray(train.X.sum(axis=1)).ravel()
    nearest = NearestNeighbors(n_neighbors=1).fit(train_latents)
    common = {"dataset": name, "seed": seed, "train_seconds": train_seconds}
    rows = []

    def record(cells_label: str, cells: ad.AnnData, generation_seed: int, **extra) -> None:
        figures, floor = scores(test, cells, reference, key, seed)
        row = common | {"cells": cells_label, "generation_seed": generation_seed} | extra
        rows.append(row | figures | {"floor_" + k: v for k, v in floor.items()})
        print(json.dumps(rows[-1]), flush=True)

    for generation_seed in range(generation_seeds):
        rng = np.random.default_rng(generation_seed)
        shuffled = reference_library.copy()
        for label in np.unique(labels):
            cells = np.flatnonzero(labels == label)
            shuffled[cells] = reference_library[rng.permutation(cells)]
        for cells_label, library in (
            ("autoencoder", reference_library),
            ("autoencoder, libraries shuffled", shuffled),
        ):
            cells = decoded_at(
                model, reference_latents, library, reference.obs, key, var, generation_seed
            )
            record(cells_label, cells, generation_seed)
    for sampler, n_steps in SAMPLERS:
        for scale in SCALES:
            for generation_seed in range(generation_seeds):
                cells = model.generate(
                    conditions=test.obs[list(keys)],
                    guidance_scale=scale,
                    sampler=sampler,
                    n_steps=n_steps,
                    seed=100 + generation_seed,
                    progress_bar=False,
                )
                latents = cells.obsm["X_latent"]
                ratio = within_condition_sd(latents, cells.obs[key].to_numpy()) / real_spread
                setting = {
                    "sampler": sampler,
                    "n_steps": n_steps,
                    "guidance_scale": scale,
                    "latent_spread": float(ratio.mean()),
                    "latent_spread_max": float(ratio.max()),
                }
                record("generated", cells, generation_seed, **setting)
                neighbour = nearest.kneighbors(latents, return_distance=False)[:, 0]
                cells = decoded_at(
                    model, latents, train_library[neighbour], cells.obs, key, var, generation_seed
                )
                record(
                    "generated, library of the nearest training cell",
                    cells,
                    generation_seed,
                    **setting,
                )
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as handle:
        for row in rows:
            handle.write(json.dumps(row | {"machine": machine_line()}) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="pbmc3k", choices=DATASETS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--generation-seeds", type=int, default=3)
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/generation_probe.jsonl")
    )
    args = parser.parse_args()
    run(args.dataset, args.seed, args.generation_seeds, args.out)


if __name__ == "__main__":
    main()
