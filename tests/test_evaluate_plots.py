"""``metrics.evaluate`` on a small trained model, the fidelity plots, and the split helpers."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from scvi_diffusion import metrics, pl


@pytest.fixture(scope="module")
def real_and_synthetic(tiny_model):
    real = tiny_model.adata
    syn = tiny_model.generate(
        conditions=real.obs[["cell_type"]].iloc[::3], seed=0, n_steps=10, progress_bar=False
    )
    return real, syn


@pytest.fixture(scope="module")
def frame(real_and_synthetic):
    real, syn = real_and_synthetic
    return metrics.evaluate(real, syn, condition_key="cell_type")


def test_evaluate_a_trained_model(real_and_synthetic, frame):
    real, syn = real_and_synthetic
    assert list(frame.columns) == ["synthetic", "floor"]
    groups = set(frame.index.get_level_values("group"))
    assert groups == {"all", *real.obs["cell_type"].astype(str)}
    overall = frame.loc["all"]
    for metric in ("mmd", "w2", "knn_auc", "rf_auc", "ilisi", "conditional_accuracy"):
        assert np.isfinite(overall.loc[metric]).all(), metric
    assert 0 <= overall.loc["knn_auc", "synthetic"] <= 1
    # three epochs of training: far from real, and the floor says so
    assert overall.loc["w2", "synthetic"] > overall.loc["w2", "floor"]
    assert len(frame.attrs["mmd_bandwidths"]) == 5
    assert frame.attrs["n_synthetic"] == syn.n_obs


def test_plots_write_figures(real_and_synthetic, frame, tmp_path):
    real, syn = real_and_synthetic
    fig = pl.gene_moments(real, syn, save=str(tmp_path / "moments.png"))
    assert len(fig.axes) == 2 and "Spearman" in fig.axes[0].get_title()
    fig = pl.metrics_summary(frame, save=str(tmp_path / "summary.png"))
    assert len(fig.axes) == 8
    fig = pl.metrics_summary(frame, group="CD14+ Monocyte")
    fig = pl.umap_real_vs_synthetic(real, syn, color="cell_type", save=str(tmp_path / "u.png"))
    assert len(fig.axes) >= 2
    for name in ("moments.png", "summary.png", "u.png"):
        assert (tmp_path / name).stat().st_size > 1000
    matplotlib.pyplot.close("all")


def test_metrics_summary_rejects_bad_input(frame):
    with pytest.raises(ValueError, match="Unknown group 'liver'"):
        pl.metrics_summary(frame, group="liver")
    with pytest.raises(TypeError, match="metrics.evaluate"):
        pl.metrics_summary(pd.DataFrame({"a": [1]}))
    # e.g. the table of metrics.floor, which has no synthetic column
    with pytest.raises(TypeError, match="'synthetic' and 'floor' columns"):
        pl.metrics_summary(frame[["floor"]])


def test_stratified_split_and_matched_sample(pbmc):
    before = pbmc.obs.copy()
    train, test = metrics.stratified_split(pbmc, "cell_type", test_size=0.3, random_state=0)
    assert train.n_obs + test.n_obs == pbmc.n_obs
    assert not set(train.obs_names) & set(test.obs_names)
    share = test.obs["cell_type"].value_counts() / pbmc.obs["cell_type"].value_counts()
    assert share.between(0.2, 0.45).all(), share
    pd.testing.assert_frame_equal(pbmc.obs, before)
    matched = metrics.matched_sample(train, test, "cell_type", random_state=0)
    pd.testing.assert_series_equal(
        matched.obs["cell_type"].value_counts().sort_index(),
        test.obs["cell_type"].value_counts().sort_index(),
    )
    assert set(matched.obs_names) <= set(train.obs_names)
    with pytest.raises(ValueError, match="'tissue' is not a column"):
        metrics.stratified_split(pbmc, "tissue")
    with pytest.raises(ValueError, match="test_size"):
        metrics.stratified_split(pbmc, "cell_type", test_size=1.5)
    with pytest.raises(ValueError, match="no cells with cell_type in"):
        metrics.matched_sample(train[train.obs["cell_type"] != "CD34+"], test, "cell_type")
