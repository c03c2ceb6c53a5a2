"""On PBMC3K (2,110 training cells x 8,573 genes, the published benchmarks' recipe): a model
trained at a budget CI affords generates the held-out cells' composition with the cell types,
CFGen-protocol distances and marker fold changes of real cells. The full-budget figures are in
docs/benchmarks.md (``make bench-fidelity``)."""

import pytest
import scvi

from scvi_diffusion import ScDiffusion, data
from scvi_diffusion.data._pbmc3k import published_split
from scvi_diffusion.metrics import (
    cfgen_scores,
    conditional_accuracy,
    marker_fold_changes,
    matched_sample,
)

from ..conftest import PBMC3K, TRAINING_SEED, needs_pbmc3k, quiet_train

# a tenth of the default VAE epochs and half the denoiser steps: about a minute on 2 cores
BUDGET = {"vae_epochs": 40, "diffusion_steps": 2000}

pytestmark = [pytest.mark.integration, needs_pbmc3k]


@pytest.fixture(scope="module")
def pbmc3k_run():
    """The benchmark's seed-0 split (80/20 at random), the model, its cells and the floor."""
    train, test = published_split(data.pbmc3k(PBMC3K), seed=0)
    scvi.settings.seed = TRAINING_SEED
    ScDiffusion.setup_anndata(train, cell_type_key="cell_type")
    model = quiet_train(ScDiffusion(train), **BUDGET)
    synthetic = model.generate(conditions=test.obs[["cell_type"]], seed=0, progress_bar=False)
    reference = matched_sample(train, test, "cell_type", random_state=0)
    return train, test, synthetic, reference


def test_pbmc3k_cells_have_the_requested_types(pbmc3k_run, figures):
    train, test, synthetic, _ = pbmc3k_run
    generated = conditional_accuracy(train, synthetic, "cell_type")
    real = conditional_accuracy(train, test, "cell_type")
    figures["accuracy_ratio"] = generated / real
    assert generated >= 0.9 * real, (generated, real)


def test_pbmc3k_cfgen_distances_near_the_real_floor(pbmc3k_run, figures):
    _, test, synthetic, reference = pbmc3k_run
    ours = cfgen_scores(test, synthetic, "cell_type").loc["mean"]
    floor = cfgen_scores(test, reference, "cell_type").loc["mean"]
    figures["w2_ratio"] = ours["w2"] / floor["w2"]
    figures["mmd_ratio"] = ours["mmd"] / floor["mmd"]
    # five training seeds: W2 1.07-1.14x the floor, MMD 1.24-1.33x
    assert ours["w2"] <= 1.2 * floor["w2"], (ours, floor)
    assert ours["mmd"] <= 1.4 * floor["mmd"], (ours, floor)


def test_pbmc3k_marker_fold_changes_are_kept(pbmc3k_run, figures):
    _, test, synthetic, reference = pbmc3k_run
    ours = marker_fold_changes(test, synthetic, "cell_type").loc["all"]
    floor = marker_fold_changes(test, reference, "cell_type").loc["all"]
    figures["pearson_below_floor"] = floor["pearson"] - ours["pearson"]
    figures["slope_off_floor"] = abs(ours["slope"] - floor["slope"])
    # five training seeds: Pearson 0.08-0.13 below the floor's, slope 0.01-0.03 off it
    assert ours["pearson"] >= floor["pearson"] - 0.15, (ours, floor)
    assert abs(ours["slope"] - floor["slope"]) <= 0.15, (ours, floor)
