"""``metrics.evaluate`` on a small trained model, the fidelity plots, and the split helpers."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer
from scipy import sparse

from scvi_diffusion import metrics, pl
from scvi_diffusion.data import pbmc68k

HEADLINE = [
    "mmd",
    "w2",
    "knn_auc",
    "rf_auc",
    "ilisi",
    "conditional_accuracy",
    "mean_spearman",
    "library_size_ks",
]
WITHIN = "within the floor's spread"
WORSE = "worse than the floor"


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
    assert list(frame.columns) == ["synthetic", "floor", "floor_low", "floor_high", "verdict"]
    groups = set(frame.index.get_level_values("group"))
    assert groups == {"all", *real.obs["cell_type"].astype(str)}
    overall = frame.loc["all"]
    numbers = ["synthetic", "floor", "floor_low", "floor_high"]
    for metric in ("mmd", "w2", "knn_auc", "rf_auc", "ilisi", "conditional_accuracy"):
        assert np.isfinite(overall.loc[metric, numbers].astype(float)).all(), metric
    # three epochs of training: the verdicts say how far from real
    assert overall.loc["mmd", "verdict"] == "worse than the floor"
    assert 0 <= overall.loc["knn_auc", "synthetic"] <= 1
    # three epochs of training: far from real, and the floor says so
    assert overall.loc["w2", "synthetic"] > overall.loc["w2", "floor"]
    assert len(frame.attrs["mmd_bandwidths"]) == 5
    assert frame.attrs["n_synthetic"] == syn.n_obs


def test_plots_write_figures(real_and_synthetic, frame, tmp_path):
    real, syn = real_and_synthetic
    fig = pl.gene_moments(real, syn, save=str(tmp_path / "moments.png"))
    assert len(fig.axes) == 2 and "Spearman" in fig.axes[0].get_title()
    fig = pl.count_moments(real, syn, save=str(tmp_path / "counts.png"))
    assert [ax.get_yscale() for ax in fig.axes] == ["log", "linear"]
    assert "median |ln(synthetic / real)|" in fig.axes[1].get_title()
    fig = pl.metrics_summary(frame, save=str(tmp_path / "summary.png"))
    assert len(fig.axes) == 8
    fig = pl.metrics_summary(frame, group="CD14+ Monocyte")
    fig = pl.umap_real_vs_synthetic(real, syn, color="cell_type", save=str(tmp_path / "u.png"))
    assert len(fig.axes) >= 2
    for name in ("moments.png", "counts.png", "summary.png", "u.png"):
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


# Verdicts and plots on real cells only: no model is trained below.


@pytest.fixture(scope="module")
def held_out_split():
    """The fidelity protocol's split of the bundled PBMCs: 30% held out, by cell type."""
    return metrics.stratified_split(pbmc68k(), "cell_type", random_state=0)


@pytest.fixture(scope="module")
def real_as_synthetic(held_out_split):
    """Real training cells in the test cells' composition as the 'synthetic' cells, and a
    second such draw as the floor's reference, so both comparisons have the same sizes."""
    train, test = held_out_split
    synthetic = metrics.matched_sample(train, test, "cell_type", random_state=0)
    reference = metrics.matched_sample(train, test, "cell_type", random_state=1)
    return metrics.evaluate(test, synthetic, "cell_type", reference=reference)


def _distort(cells, train, how):
    distorted = cells.copy()
    rng = np.random.default_rng(0)
    if how == "one cell type":
        # every cell a monocyte's counts, whatever cell type its obs claims
        monocytes = train[train.obs["cell_type"] == "CD14+ Monocyte"]
        distorted.X = monocytes.X[rng.choice(monocytes.n_obs, size=cells.n_obs)]
    else:
        counts = cells.X.toarray()
        distorted.X = sparse.csr_matrix(np.stack([rng.permutation(row) for row in counts]))
    return distorted


@pytest.mark.usefixtures("one_blas_thread")
def test_real_cells_come_out_within_the_floors_spread(real_as_synthetic):
    table = metrics.verdicts(real_as_synthetic)
    assert list(table.index) == HEADLINE
    assert (table["verdict"] == WITHIN).all(), table
    overall = real_as_synthetic.loc["all"]
    assert (overall["floor_low"] <= overall["floor"]).all()
    assert (overall["floor"] <= overall["floor_high"]).all()
    # the spread is estimated for group "all" only
    monocytes = real_as_synthetic.loc["CD14+ Monocyte"]
    assert monocytes[["floor_low", "floor_high"]].isna().all().all()
    assert set(monocytes["verdict"]) == {
        "not assessed",
        "no verdict (describes the real cells)",
    }
    assert real_as_synthetic.attrs["floor_repeats"] == 5


@pytest.mark.usefixtures("one_blas_thread")
def test_real_cells_are_not_called_worse_without_a_reference(held_out_split):
    # The floor of two halves of the held-out cells is smaller than the synthetic comparison,
    # so real cells may come out better than it, never worse.
    train, test = held_out_split
    synthetic = metrics.matched_sample(train, test, "cell_type", random_state=0)
    table = metrics.verdicts(metrics.evaluate(test, synthetic))
    assert not table["verdict"].str.startswith(WORSE).any(), table


@pytest.mark.usefixtures("one_blas_thread")
@pytest.mark.parametrize("how", ["one cell type", "genes shuffled"])
def test_distorted_cells_come_out_worse_than_the_floor(held_out_split, how):
    train, test = held_out_split
    synthetic = metrics.matched_sample(train, test, "cell_type", random_state=0)
    reference = metrics.matched_sample(train, test, "cell_type", random_state=1)
    frame = metrics.evaluate(test, _distort(synthetic, train, how), reference=reference)
    table = metrics.verdicts(frame)
    for metric in ("mmd", "knn_auc"):
        assert table.loc[metric, "verdict"] == WORSE, table
        assert table.loc[metric, "synthetic"] > table.loc[metric, "floor_high"]


def test_verdict_rules_follow_each_metrics_direction():
    # metric: (synthetic, floor_low, floor_high), and the verdict expected
    cases = {
        "mmd": ((0.5, -0.1, 0.1), WORSE),
        "w2": ((0.5, 1.0, 2.0), "better than the floor"),
        "library_size_w1": ((1.5, 1.0, 2.0), WITHIN),
        "knn_auc": ((0.9, 0.4, 0.6), WORSE),
        "rf_auc": ((0.2, 0.4, 0.6), "worse than the floor (below chance)"),
        "ilisi": ((1.2, 0.8, 1.0), "better than the floor"),
        "mean_spearman": ((0.5, 0.9, 1.0), WORSE),
        "library_size_ks": ((0.3, 0.0, 0.2), WORSE),
        "mean_variance_slope_synthetic": ((2.0, 1.0, 1.5), "worse than the floor (higher)"),
        "mean_variance_slope_real": ((9.0, 1.0, 1.5), "no verdict (describes the real cells)"),
        "dispersion_mae": ((np.nan, 0.0, 0.2), "not assessed"),
        "zero_fraction_gene_mae": ((0.1, np.nan, np.nan), "not assessed"),
    }
    frame = pd.DataFrame(
        [(value, 1.0, low, high) for (value, low, high), _ in cases.values()],
        columns=["synthetic", "floor", "floor_low", "floor_high"],
        index=pd.MultiIndex.from_product([["all"], list(cases)], names=["group", "metric"]),
    )
    table = metrics.verdicts(frame, metrics=list(cases))
    assert table["verdict"].tolist() == [verdict for _, verdict in cases.values()]
    assert table.loc["mmd", "direction"] == "lower is better (unbiased MMD^2: can be < 0)"
    assert table.loc["knn_auc", "direction"] == "0.5 is best"
    assert table.loc["ilisi", "direction"] == "higher is better"


def test_verdicts_table_layout_and_errors(real_as_synthetic):
    table = metrics.verdicts(real_as_synthetic)
    assert list(table.columns) == [
        "synthetic",
        "floor",
        "floor_low",
        "floor_high",
        "verdict",
        "direction",
    ]
    assert table.index.name == "metric"
    printed = table.to_string()
    assert all(metric in printed for metric in HEADLINE) and "can be < 0" in printed
    subset = metrics.verdicts(real_as_synthetic, metrics=["w2", "mmd"])
    assert list(subset.index) == ["w2", "mmd"]
    # a table without the spread (an older CSV, or n_repeats=0) is not assessed
    bare = metrics.verdicts(real_as_synthetic[["synthetic", "floor"]])
    assert set(bare["verdict"]) == {"not assessed"}
    with pytest.raises(ValueError, match="No metric 'fid'"):
        metrics.verdicts(real_as_synthetic, metrics=["fid"])
    with pytest.raises(ValueError, match="Unknown group 'liver'"):
        metrics.verdicts(real_as_synthetic, group="liver")
    with pytest.raises(TypeError, match="metrics.evaluate"):
        metrics.verdicts(pd.DataFrame({"synthetic": [1.0], "floor": [1.0]}))


def test_metrics_summary_titles_spread_and_verdicts(real_as_synthetic, tmp_path):
    fig = pl.metrics_summary(real_as_synthetic, save=str(tmp_path / "summary.png"))
    # the reference need not be held out: the title says only what is compared
    assert fig.get_suptitle() == "Synthetic vs real cells (all); floor = real vs real"
    assert "held-out" not in fig.get_suptitle()
    assert "unbiased estimate of MMD²" in fig.get_supxlabel()
    assert "below 0" in fig.get_supxlabel()
    table = metrics.verdicts(real_as_synthetic)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax, (metric, row) in zip(fig.axes, table.iterrows(), strict=True):
        assert ax.get_title().split()[0] == metric
        assert ax.get_xlabel().replace("\n", " ") == row["verdict"]
        assert sum(isinstance(c, ErrorbarContainer) for c in ax.containers) == 1, metric
        labels = ax.get_xticklabels()
        assert [label.get_text() for label in labels] == [
            f"synthetic\n{row['synthetic']:.3g}",
            f"floor\n{row['floor']:.3g}",
        ]
        # Value labels sit outside the plotting area, so they overlap no bar or error bar.
        area = ax.get_window_extent(renderer)
        assert not any(label.get_window_extent(renderer).overlaps(area) for label in labels)
        assert not ax.texts
    assert (tmp_path / "summary.png").stat().st_size > 1000
    fig = pl.metrics_summary(real_as_synthetic, title="Run 7")
    assert fig.get_suptitle() == "Run 7"
    fig = pl.metrics_summary(real_as_synthetic, group="CD19+ B")
    assert fig.get_suptitle() == "Synthetic vs real cells (CD19+ B); floor = real vs real"
    assert "No spread" in fig.get_supxlabel()
    assert {ax.get_xlabel() for ax in fig.axes} == {"not assessed"}
    matplotlib.pyplot.close("all")


def test_umap_one_panel_per_color_key(held_out_split):
    train, test = held_out_split
    real, synthetic = test[:120].copy(), train[:120].copy()
    for adata in (real, synthetic):
        adata.obs["patient_id"] = np.resize(["p1", "p2"], adata.n_obs)
    fig = pl.umap_real_vs_synthetic(real, synthetic, color=["cell_type", "patient_id"])
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [
        "real and synthetic: source",
        "real and synthetic: cell_type",
        "real and synthetic: patient_id",
    ]
    del synthetic.obs["patient_id"]
    with pytest.raises(ValueError, match="'patient_id' is not a column of the synthetic.*phase"):
        pl.umap_real_vs_synthetic(real, synthetic, color=["cell_type", "patient_id"])
    with pytest.raises(ValueError, match="'tissue' is not a column of the real"):
        pl.umap_real_vs_synthetic(real, synthetic, color="tissue")
    matplotlib.pyplot.close("all")
