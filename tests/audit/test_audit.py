"""The privacy audit of a trained model: membership scores (positive and negative controls),
the audit's table and verdict, and its errors."""

import numpy as np
import pandas as pd
import pytest
import scvi
from scipy import sparse

import scvi_diffusion
from scvi_diffusion import ScDiffusion, metrics

from ..conftest import TRAINING_SEED, quiet_train


def noisy_copies(cells, seed: int = 0):
    """Each cell's counts thinned to 90% and topped up with 10% Poisson noise."""
    rng = np.random.default_rng(seed)
    counts = sparse.csr_matrix(cells.X).astype(np.int64)
    thinned, topped = counts.copy(), counts.copy()
    thinned.data = rng.binomial(counts.data, 0.9)
    topped.data = rng.poisson(0.1 * counts.data)
    copies = cells[:, :].copy()
    copies.X = (thinned + topped).astype(np.float32)
    copies.obs_names = [f"copy_{i}" for i in range(copies.n_obs)]
    return copies


@pytest.fixture(scope="module")
def small_split():
    """80 training cells and 80 others of the bundled PBMCs, by cell type."""
    adata = scvi_diffusion.data.pbmc68k()
    rest, train = metrics.stratified_split(adata, "cell_type", test_size=80 / 700, random_state=0)
    _, holdout = metrics.stratified_split(rest, "cell_type", test_size=80 / 620, random_state=0)
    return train, holdout


def _small_model(train, **kwargs):
    scvi.settings.seed = TRAINING_SEED
    cells = train.copy()
    ScDiffusion.setup_anndata(cells, cell_type_key="cell_type")
    return quiet_train(ScDiffusion(cells), **kwargs)


def test_membership_scores_single_out_a_model_trained_far_past_its_data(small_split, figures):
    """Positive controls: 3,000 denoiser steps on 80 cells (3,000 passes) fit the training
    latents themselves, and 100 epochs of the autoencoder spread its training cells wider
    than new ones; negative control: a few passes fit nothing."""
    train, holdout = small_split
    overfit = _small_model(train, vae_epochs=100, diffusion_steps=3000)
    members, others = overfit.get_membership_scores(), overfit.get_membership_scores(holdout)
    assert list(members.columns) == ["denoiser_loss", "reconstruction_loss", "latent_distance"]
    assert members.index.equals(overfit.adata.obs_names)
    assert others.index.equals(holdout.obs_names)
    attack = metrics.membership_inference(-members["denoiser_loss"], -others["denoiser_loss"])
    spread = metrics.membership_inference(members["latent_distance"], others["latent_distance"])
    figures["overfit_denoiser_auc"], figures["overfit_encoder_auc"] = attack["auc"], spread["auc"]
    barely = _small_model(train, max_epochs=3)
    members, others = barely.get_membership_scores(), barely.get_membership_scores(holdout)
    for loss in members:
        figures[f"barely_{loss}_auc"] = metrics.membership_inference(
            -members[loss], -others[loss]
        )["auc"]
    # five training seeds: denoiser 0.95-0.97, encoder 0.84-0.90; the barely trained model's
    # 0.35-0.52
    assert attack["auc"] > 0.9
    assert spread["auc"] > 0.75
    for loss in members:
        assert 0.3 < figures[f"barely_{loss}_auc"] < 0.7, loss


def test_membership_scores_are_seeded(small_split):
    train, holdout = small_split
    model = _small_model(train, max_epochs=3)
    first, again = model.get_membership_scores(holdout), model.get_membership_scores(holdout)
    pd.testing.assert_frame_equal(first, again)
    other = model.get_membership_scores(holdout, seed=1)
    assert not np.allclose(first["denoiser_loss"], other["denoiser_loss"])
    assert np.isfinite(first.to_numpy()).all() and (first.to_numpy() > 0).all()


def test_audit_flags_noisy_copies_and_leaves_the_cells_untouched(trained_model, pbmc_split):
    holdout = pbmc_split[1].copy()
    before_obs, before_uns = holdout.obs.copy(), dict(holdout.uns)
    training_obs = trained_model.adata.obs.copy()
    report = trained_model.audit(holdout, synthetic=noisy_copies(pbmc_split[0]), seed=0)
    columns = ["value", "reference", "limit", "passed", "concerns", "n_train", "n_holdout"]
    assert list(report.columns) == columns
    assert str(report["passed"].dtype) == "boolean"
    assert report.loc["closest_record_share", "value"] >= 0.9
    assert report.loc["closest_record_share", "reference"] == pytest.approx(490 / 700)
    assert not report.loc["closest_record_share", "passed"]
    verdict = report.attrs["verdict"]
    assert verdict["synthetic cells"] == "failed: closest_record_share, memorized_fraction"
    assert verdict["model"].startswith(verdict["synthetic cells"])
    assert set(report["concerns"]) == {"synthetic cells", "model"}
    assert report.loc["denoiser_membership_auc", "concerns"] == "model"
    for check in ("denoiser", "reconstruction", "encoder"):
        assert report.loc[f"{check}_membership_auc", "limit"] == 0.6
        assert pd.isna(report.loc[f"{check}_membership_tpr_at_1pct_fpr", "passed"])
    assert (report["n_train"] == 490).all() and (report["n_holdout"] == 210).all()
    pd.testing.assert_frame_equal(holdout.obs, before_obs)
    assert dict(holdout.uns) == before_uns
    pd.testing.assert_frame_equal(trained_model.adata.obs, training_obs)


def test_audit_by_donor(trained_model, pbmc_split):
    """Donors split between the sides: one row more per attack, counted in donors."""
    train, holdout = pbmc_split
    rng = np.random.default_rng(0)
    holdout = holdout.copy()
    holdout.obs["donor"] = rng.choice(["h1", "h2", "h3"], holdout.n_obs)
    trained_model.adata.obs["donor"] = rng.choice(["t1", "t2", "t3", "t4"], train.n_obs)
    try:
        report = trained_model.audit(
            holdout, synthetic=holdout, donor_key="donor", progress_bar=False
        )
    finally:
        del trained_model.adata.obs["donor"]
    by_donor = report.loc["denoiser_membership_auc_by_donor"]
    assert (by_donor["n_train"], by_donor["n_holdout"]) == (4, 3)
    assert 0.0 <= by_donor["value"] <= 1.0
    assert "reconstruction_membership_tpr_at_1pct_fpr_by_donor" in report.index
    assert report.attrs["training_cells_loss"].keys() == {
        f"{attack}{suffix}"
        for attack in ("denoiser", "reconstruction", "encoder")
        for suffix in ("", "_by_donor")
    }


def test_audit_errors(trained_model, pbmc_split, tiny_model):
    train, holdout = pbmc_split
    with pytest.raises(ValueError, match="shares 490 cells"):
        trained_model.audit(train)
    with pytest.raises(ValueError, match="lacks 10 training genes"):
        trained_model.audit(holdout[:, 10:].copy())
    with pytest.raises(ValueError, match="at least 4 cells"):
        trained_model.audit(holdout[:3].copy())
    with pytest.raises(ValueError, match="'donor' is not a column"):
        trained_model.audit(holdout, donor_key="donor")
    with pytest.raises(TypeError, match="AnnData"):
        trained_model.audit(holdout.X)
    both = holdout.copy()
    both.obs["donor"] = "d1"
    trained_model.adata.obs["donor"] = "d1"
    try:
        with pytest.raises(ValueError, match=r"Donors \['d1'\] are in both"):
            trained_model.audit(both, donor_key="donor")
    finally:
        del trained_model.adata.obs["donor"]
    # tiny_model: a batch key and an unconditional denoiser (classifier guidance)
    cells = tiny_model.adata[:50].copy()
    cells.obs_names = [f"other_{i}" for i in range(50)]
    scores = tiny_model.get_membership_scores(cells)
    assert scores.shape == (50, 3) and np.isfinite(scores.to_numpy()).all()
    cells.obs["batch"] = "b3"
    with pytest.raises(ValueError, match=r"Batches \['b3'\].*not in training"):
        tiny_model.get_membership_scores(cells)
    del cells.obs["tissue"]
    with pytest.raises(ValueError, match=r"lacks the registered columns \['tissue'\]"):
        tiny_model.get_membership_scores(cells)


def test_membership_scores_of_cells_with_values_and_unseen_categories(small_split):
    """A model with a continuous condition: each cell's own value (missing: not given) and
    a category it was not trained on (not given) both reach the denoiser."""
    train, holdout = small_split
    train, holdout = train.copy(), holdout.copy()
    train.obs["dose"] = np.tile([0.0, 1.0, 2.0, 3.0], train.n_obs // 4)
    holdout.obs["dose"] = np.nan
    holdout.obs.loc[holdout.obs_names[:10], "dose"] = 2.5
    scvi.settings.seed = 0
    ScDiffusion.setup_anndata(train, cell_type_key="cell_type", continuous_condition_keys=["dose"])
    model = quiet_train(ScDiffusion(train), max_epochs=3)
    holdout.obs["cell_type"] = holdout.obs["cell_type"].astype(str)
    holdout.obs.iloc[:5, holdout.obs.columns.get_loc("cell_type")] = "never seen"
    scores = model.get_membership_scores(holdout)
    assert scores.shape == (holdout.n_obs, 3) and np.isfinite(scores.to_numpy()).all()
    own = model._own_labels(holdout.obs)
    null = model.module.diffusion.denoiser.null_labels
    assert own.shape == (holdout.n_obs, 2)
    assert (own[:5, 0] == null[0]).all() and (own[5:, 0] != null[0]).all()
    values = own[:, 1].numpy()
    assert np.isnan(values[10:]).all()
    expected = model._value_range("dose").standardize([2.5])[0]
    assert expected > 0 and values[:10] == pytest.approx(np.full(10, expected))


def test_audit_table_verdicts():
    """Limits and verdicts: the value at its limit passes; rows without a limit never fail;
    the synthetic cells' verdict reads only their checks, the model's all of them."""
    from scvi_diffusion.audit import audit_table

    rows = {
        "closest_record_share": (0.55, 0.5, 0.55, "synthetic cells", 10, 10),
        "denoiser_membership_auc": (0.61, 0.5, 0.6, "model", 10, 10),
        "denoiser_membership_tpr_at_1pct_fpr": (0.9, 0.01, np.nan, "model", 10, 10),
    }
    table = audit_table(rows)
    assert table["passed"].tolist()[:2] == [True, False]
    assert pd.isna(table.loc["denoiser_membership_tpr_at_1pct_fpr", "passed"])
    assert table.attrs["verdict"] == {
        "synthetic cells": "passed",
        "model": "failed: denoiser_membership_auc",
    }


def test_membership_attack_reads_either_direction():
    """Training cells with higher losses are given away as well as with lower ones."""
    from scvi_diffusion.audit import either_direction

    rng = np.random.default_rng(0)
    usual, lower = either_direction(rng.normal(0, 1, 500), rng.normal(1, 1, 500), None, None)
    flipped, higher = either_direction(rng.normal(1, 1, 500), rng.normal(0, 1, 500), None, None)
    assert lower and not higher
    assert usual["auc"] == pytest.approx(flipped["auc"], abs=0.05) and usual["auc"] > 0.7
