"""Known-answer tests of the fidelity metrics on the bundled PBMCs and seeded counts."""

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from scvi_diffusion import metrics
from scvi_diffusion.data import pbmc68k
from scvi_diffusion.metrics._mixing import _gaussian_weights

METRICS = [
    "mean_spearman",
    "mean_pearson",
    "variance_spearman",
    "variance_pearson",
    "mmd",
    "w2",
    "knn_auc",
    "rf_auc",
    "ilisi",
    "conditional_accuracy",
    "zero_fraction_gene_corr",
    "zero_fraction_gene_mae",
    "zero_fraction_cell_ks",
    "library_size_ks",
    "library_size_w1",
    "mean_variance_slope_real",
    "mean_variance_slope_synthetic",
    "dispersion_mae",
    "variance_log_ratio",
    "zero_fraction_log_ratio",
]


pytestmark = pytest.mark.usefixtures("one_blas_thread")


@pytest.fixture(scope="module")
def cells():
    adata = pbmc68k()
    assert "cell_type" in adata.obs
    assert {"CD34+", "CD14+ Monocyte"} <= set(adata.obs["cell_type"])
    return adata


@pytest.fixture(scope="module")
def halves(cells):
    """Two disjoint random halves of the real cells: a perfect 'generator' for the other."""
    order = np.random.default_rng(0).permutation(cells.n_obs)
    half = cells.n_obs // 2
    return cells[order[:half]].copy(), cells[order[half:]].copy()


@pytest.fixture(scope="module")
def space(cells):
    return metrics.shared_space(cells, cells)


@pytest.fixture(scope="module")
def pca_halves(space):
    """Real PCA coordinates of two random halves (one distribution, independent samples)."""
    order = np.random.default_rng(1).permutation(space.n_real)
    half = space.n_real // 2
    return space.real_pca[order[:half]], space.real_pca[order[half:]]


@pytest.fixture(scope="module")
def evaluated(halves):
    real, synthetic = halves
    return metrics.evaluate(real, synthetic, condition_key="cell_type")


def _shift(points, amount):
    shifted = points.copy()
    shifted[:, 0] += amount
    return shifted


def _snapshot(adata):
    matrix = adata.X.toarray() if sparse.issparse(adata.X) else np.asarray(adata.X)
    return adata.obs.copy(), adata.var.copy(), matrix.copy()


def _assert_unchanged(adata, snapshot):
    obs, var, matrix = snapshot
    pd.testing.assert_frame_equal(adata.obs, obs)
    pd.testing.assert_frame_equal(adata.var, var)
    now = adata.X.toarray() if sparse.issparse(adata.X) else np.asarray(adata.X)
    np.testing.assert_array_equal(now, matrix)


# Shared space


def test_shared_space_matches_genes_by_name(cells):
    # Genes in reverse order plus an extra, silent one; dense instead of sparse.
    genes = list(cells.var_names[::-1])
    counts = cells[:, genes].X.toarray()
    synthetic = ad.AnnData(
        np.hstack([counts, np.zeros((cells.n_obs, 1), dtype=np.float32)]),
        obs=cells.obs.copy(),
        var=pd.DataFrame(index=[*genes, "EXTRA"]),
    )
    space = metrics.shared_space(cells, synthetic)
    np.testing.assert_allclose(space.synthetic_counts, space.real_counts)
    np.testing.assert_allclose(space.synthetic_pca, space.real_pca, atol=1e-8)
    np.testing.assert_allclose(space.real_library, np.asarray(cells.X.sum(axis=1)).ravel())
    assert space.real_counts.dtype == np.float64
    assert space.real_pca.shape == (cells.n_obs, 30)
    centred = space.real_log - space.real_mean
    np.testing.assert_allclose(space.real_pca, centred @ space.components.T)
    # Library sizes count every gene, the extra one too, as normalize_total would.
    synthetic.X[:, -1] = 7.0
    space = metrics.shared_space(cells, synthetic)
    np.testing.assert_allclose(space.synthetic_library, space.real_library + 7.0)


def test_shared_space_selects_highly_variable_genes(cells):
    space = metrics.shared_space(cells, cells, n_top_genes=200, n_comps=10)
    assert len(space.genes) == 200
    assert space.real_counts.shape == (cells.n_obs, 200)
    assert space.components.shape == (10, 200)


def test_shared_space_subset_keeps_the_space(space, cells):
    mask = (cells.obs["cell_type"] == "CD14+ Monocyte").to_numpy()
    subset = space.subset(mask, ~mask)
    assert subset.n_real == mask.sum()
    assert subset.n_synthetic == (~mask).sum()
    np.testing.assert_array_equal(subset.components, space.components)
    np.testing.assert_array_equal(subset.real_pca, space.real_pca[mask])
    np.testing.assert_array_equal(subset.synthetic_counts, space.synthetic_counts[~mask])
    with pytest.raises(ValueError, match="real_mask"):
        space.subset(mask[:10], ~mask)


def test_shared_space_requires_the_real_genes(cells):
    with pytest.raises(ValueError, match="lack 5 genes"):
        metrics.shared_space(cells, cells[:, 5:].copy())


# Expression


def test_expression_correlations_of_identical_sets(cells, space):
    for compute in (metrics.mean_expression_correlation, metrics.variance_correlation):
        result = compute(cells, cells, space=space)
        assert result["spearman"] == pytest.approx(1.0)
        assert result["pearson"] == pytest.approx(1.0)


def test_expression_correlations_drop_for_another_cell_type(cells):
    cd14 = cells[cells.obs["cell_type"] == "CD14+ Monocyte"].copy()
    b_cells = cells[cells.obs["cell_type"] == "CD19+ B"].copy()
    order = np.random.default_rng(0).permutation(cd14.n_obs)
    same = metrics.mean_expression_correlation(cd14[order[:60]], cd14[order[60:]])
    other = metrics.mean_expression_correlation(cd14[order[:60]], b_cells)
    assert other["pearson"] < same["pearson"] - 0.05
    assert other["spearman"] < same["spearman"] - 0.05


def test_expression_correlation_is_nan_for_constant_input(cells):
    silent = ad.AnnData(np.zeros((20, cells.n_vars), dtype=np.float32), var=cells.var.copy())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        means = metrics.mean_expression_correlation(cells, silent)
        variances = metrics.variance_correlation(cells, silent)
    assert np.isnan(means["pearson"]) and np.isnan(means["spearman"])
    assert np.isnan(variances["pearson"]) and np.isnan(variances["spearman"])


# Distances


def test_mmd_of_identical_sets_is_about_zero(space):
    x = space.real_pca
    result = metrics.mmd_rbf(x, x.copy())
    assert abs(result["mmd"]) < 5e-3
    assert len(result["bandwidths"]) == 5


def test_mmd_grows_with_a_shift(pca_halves):
    first, second = pca_halves
    same = metrics.mmd_rbf(first, second)["mmd"]
    shifted = metrics.mmd_rbf(first, _shift(second, 20.0))["mmd"]
    assert abs(same) < 5e-3
    assert shifted > same + 0.05


def test_mmd_default_bandwidths_depend_only_on_the_reference(pca_halves):
    first, second = pca_halves
    bandwidths = metrics.mmd_rbf(first, second)["bandwidths"]
    assert metrics.mmd_rbf(first, _shift(second, 20.0))["bandwidths"] == bandwidths
    ratios = np.asarray(bandwidths) / bandwidths[2]
    np.testing.assert_allclose(ratios, [0.25, 0.5, 1, 2, 4])
    explicit = metrics.mmd_rbf(first, second, bandwidths=(1.0, 2.0))
    assert explicit["bandwidths"] == (1.0, 2.0)
    with pytest.raises(ValueError, match="bandwidths"):
        metrics.mmd_rbf(first, second, bandwidths=(0.0,))


def test_wasserstein2(space, pca_halves):
    x = space.real_pca
    assert metrics.wasserstein2(x, x.copy()) == pytest.approx(0.0, abs=1e-5)
    first, second = pca_halves
    same = metrics.wasserstein2(first, second)
    assert metrics.wasserstein2(first, _shift(second, 20.0)) > same + 5
    # A pure translation of the same points moves every point by exactly the shift.
    assert metrics.wasserstein2(first, _shift(first, 3.0)) == pytest.approx(3.0, rel=1e-6)


# Classifiers


@pytest.mark.parametrize("method", ["knn", "random_forest"])
def test_auc_at_chance_for_one_distribution_and_one_when_separated(pca_halves, method):
    first, second = pca_halves
    assert metrics.real_vs_synthetic_auc(first, second, method=method) == pytest.approx(
        0.5, abs=0.07
    )
    far = metrics.real_vs_synthetic_auc(first, _shift(second, 1000.0), method=method)
    assert far == pytest.approx(1.0)


@pytest.mark.parametrize(("method", "low", "high"), [("knn", 0.3, 0.5), ("random_forest", 0, 0.3)])
def test_auc_of_duplicated_cells_is_not_above_chance(space, method, low, high):
    # Each cell's exact twin lands in the fitted half half the time and carries the other
    # label there, so copies score below chance rather than at it (0.40 kNN, 0.13 RF here).
    x = space.real_pca
    assert low < metrics.real_vs_synthetic_auc(x, x.copy(), method=method) < high


def test_auc_rejects_bad_arguments(pca_halves):
    first, second = pca_halves
    with pytest.raises(ValueError, match="'svm'.*knn.*random_forest"):
        metrics.real_vs_synthetic_auc(first, second, method="svm")
    with pytest.raises(ValueError, match="at least 4"):
        metrics.real_vs_synthetic_auc(first[:3], second)


def test_conditional_accuracy(cells, space):
    own = metrics.conditional_accuracy(cells, cells, "cell_type", space=space)
    permuted = cells.copy()
    labels = permuted.obs["cell_type"].to_numpy()
    permuted.obs["cell_type"] = labels[np.random.default_rng(0).permutation(labels.size)]
    shuffled = metrics.conditional_accuracy(cells, permuted, "cell_type", space=space)
    assert own > 0.8
    assert shuffled < 0.3
    micro = metrics.conditional_accuracy(cells, cells, "cell_type", space=space, average="micro")
    assert micro > 0.8
    with pytest.raises(ValueError, match="'nope'"):
        metrics.conditional_accuracy(cells, cells, "nope", space=space)
    with pytest.raises(ValueError, match="average"):
        metrics.conditional_accuracy(cells, cells, "cell_type", space=space, average="weighted")


# Mixing


def test_ilisi_mixed_and_separated(pca_halves):
    first, second = pca_halves
    assert metrics.ilisi(first, second) > 0.7
    assert metrics.ilisi(first, _shift(second, 1000.0)) == pytest.approx(0.0, abs=1e-6)
    assert metrics.ilisi(first, _shift(second, 1000.0), scale=False) == pytest.approx(1.0)


def test_ilisi_weights_reach_the_perplexity():
    sq_dist = np.random.default_rng(0).gamma(2.0, 50.0, size=(200, 90))
    weights = _gaussian_weights(sq_dist, perplexity=30.0)
    entropy = -(weights * np.log(np.maximum(weights, 1e-300))).sum(axis=1)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    np.testing.assert_allclose(entropy, np.log(30.0), atol=1e-6)


# Counts


def _poisson_cells(n_cells=300, n_genes=80, scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(42).gamma(0.5, 2.0, size=n_genes)
    counts = rng.poisson(means * scale, size=(n_cells, n_genes)).astype(np.float32)
    return ad.AnnData(
        sparse.csr_matrix(counts), var=pd.DataFrame(index=[f"g{i}" for i in range(n_genes)])
    )


def test_count_checks_of_identical_sets(cells, space):
    checks = metrics.count_checks(cells, cells, space=space)
    assert checks["zero_fraction_gene_corr"] == pytest.approx(1.0)
    assert checks["zero_fraction_gene_mae"] == 0
    assert checks["zero_fraction_cell_ks"] == 0
    assert checks["library_size_ks"] == 0
    assert checks["library_size_w1"] == 0
    assert checks["dispersion_mae"] == 0
    assert checks["mean_variance_slope_real"] == checks["mean_variance_slope_synthetic"]


def test_count_checks_see_doubled_libraries_and_poisson_slope():
    real = _poisson_cells(seed=0)
    same = _poisson_cells(seed=1)
    doubled = real.copy()
    doubled.X = doubled.X * 2
    baseline = metrics.count_checks(real, same)
    twice = metrics.count_checks(real, doubled)
    assert twice["library_size_w1"] > baseline["library_size_w1"] + 0.2
    assert twice["library_size_ks"] > 0.9
    # Poisson counts: variance = mean, so slope 1; doubling counts quadruples variances.
    assert baseline["mean_variance_slope_real"] == pytest.approx(1.0, abs=0.1)
    assert twice["mean_variance_slope_synthetic"] == pytest.approx(1.0, abs=0.1)
    assert twice["dispersion_mae"] == pytest.approx(np.log10(2), abs=0.01)
    assert baseline["dispersion_mae"] < 0.1
    assert baseline["zero_fraction_gene_corr"] > 0.95


def test_per_gene_log_ratios_known_answer():
    from scvi_diffusion.metrics._counts import _per_gene_log_ratios

    # gene 2 never varies in the real cells, so only its zero fractions count
    real = np.array([[0, 0, 5], [0, 0, 5], [1, 0, 5], [2, 1, 5]], dtype=float)
    synthetic = np.array([[1, 0, 0], [1, 0, 5], [3, 0, 5], [5, 1, 5]], dtype=float)
    ratios = _per_gene_log_ratios(real, synthetic)
    real_var = real.var(axis=0, ddof=1)[:2]
    synthetic_var = synthetic.var(axis=0, ddof=1)[:2]
    assert ratios["variance_log_ratio"] == pytest.approx(
        np.median(np.abs(np.log(synthetic_var / real_var)))
    )
    # smoothed zero fractions (zeros + 0.5) / 5: real 0.5, 0.7, 0.1; synthetic 0.1, 0.7, 0.3,
    # so the log ratios are ln 5, 0 and ln 3
    assert ratios["zero_fraction_log_ratio"] == pytest.approx(np.log(3))


def test_per_gene_log_ratios_see_doubled_counts_and_overdispersion():
    real = _poisson_cells(n_cells=2000, seed=0)
    doubled = real.copy()
    doubled.X = doubled.X * 2
    twice = metrics.count_checks(real, doubled)
    # every variance quadruples and no zero moves
    assert twice["variance_log_ratio"] == pytest.approx(np.log(4), abs=1e-6)
    assert twice["zero_fraction_log_ratio"] == 0
    same = metrics.count_checks(real, _poisson_cells(n_cells=2000, seed=1))
    assert same["variance_log_ratio"] < 0.1 and same["zero_fraction_log_ratio"] < 0.05
    # negative binomial counts of the same means: more variance and more zeros
    rng = np.random.default_rng(2)
    means = np.asarray(real.X.mean(axis=0)).ravel()
    theta = 0.5
    nb = real.copy()
    nb.X = sparse.csr_matrix(
        rng.negative_binomial(theta, theta / (theta + means), size=real.shape).astype(np.float32)
    )
    overdispersed = metrics.count_checks(real, nb)
    assert overdispersed["variance_log_ratio"] > 0.5
    assert overdispersed["zero_fraction_log_ratio"] > 0.1


# Evaluate and floor


def test_evaluate_frame_layout(evaluated, cells):
    numbers = ["synthetic", "floor", "floor_low", "floor_high"]
    assert list(evaluated.columns) == [*numbers, "verdict"]
    assert evaluated.index.names == ["group", "metric"]
    assert (evaluated[numbers].dtypes == np.float64).all()
    assert evaluated["verdict"].map(type).eq(str).all()
    groups = evaluated.index.get_level_values("group").unique()
    assert list(groups) == ["all", *sorted(cells.obs["cell_type"].unique())]
    for group in groups:
        assert list(evaluated.loc[group].index) == METRICS
    assert evaluated.loc["all"].notna().all().all()
    assert evaluated.attrs["floor_repeats"] == 5
    assert len(evaluated.attrs["mmd_bandwidths"]) == 5
    assert evaluated.attrs["n_real"] == evaluated.attrs["n_synthetic"] == 350
    assert evaluated.attrs["n_fit"] + evaluated.attrs["n_held_out"] == 350
    assert evaluated.attrs["floor_source"] == "halves"


def test_every_metric_has_a_direction_for_its_verdict():
    from scvi_diffusion.metrics._pairs import DIRECTIONS

    assert set(DIRECTIONS) == set(METRICS)


def test_evaluate_of_real_against_real_is_near_the_floor(evaluated):
    # Tolerances cover the split noise seen over seeds on these 350 + 350 cells.
    tolerance = {
        "mean_spearman": 0.05,
        "mean_pearson": 0.05,
        "variance_spearman": 0.06,
        "variance_pearson": 0.06,
        "mmd": 0.006,
        "knn_auc": 0.1,
        "rf_auc": 0.1,
        "ilisi": 0.1,
        "zero_fraction_gene_corr": 0.05,
        "zero_fraction_gene_mae": 0.03,
        "library_size_w1": 0.05,
        "mean_variance_slope_real": 0.1,
        "mean_variance_slope_synthetic": 0.1,
        "dispersion_mae": 0.06,
    }
    overall = evaluated.loc["all"]
    for metric, allowed in tolerance.items():
        synthetic, floor = overall.loc[metric, ["synthetic", "floor"]]
        assert abs(synthetic - floor) < allowed, (metric, synthetic, floor)
    assert overall.loc["knn_auc", "synthetic"] < 0.6
    assert overall.loc["rf_auc", "synthetic"] < 0.6
    assert overall.loc["w2", "synthetic"] < 1.2 * overall.loc["w2", "floor"]


def test_evaluate_flags_a_wrong_generator(halves):
    # Four cell types keep the per-condition rows few; the "generator" returns cells of the
    # other types, labelled as each of the four in turn.
    types = ["CD14+ Monocyte", "CD19+ B", "CD4+/CD25 T Reg", "Dendritic"]
    real = halves[0][halves[0].obs["cell_type"].isin(types)].copy()
    wrong = halves[1][~halves[1].obs["cell_type"].isin(types)].copy()
    wrong.obs["cell_type"] = pd.Categorical(np.resize(types, wrong.n_obs))
    result = metrics.evaluate(real, wrong, condition_key="cell_type").loc["all"]
    synthetic, floor = result["synthetic"], result["floor"]
    assert synthetic["mmd"] > floor["mmd"] + 0.03
    assert synthetic["w2"] > 1.3 * floor["w2"]
    assert synthetic["knn_auc"] > 0.85
    assert synthetic["rf_auc"] > 0.85
    assert synthetic["ilisi"] < floor["ilisi"] - 0.5
    assert synthetic["conditional_accuracy"] < floor["conditional_accuracy"] - 0.2
    assert synthetic["mean_pearson"] < floor["mean_pearson"] - 0.1
    assert synthetic["library_size_ks"] > floor["library_size_ks"]


def test_evaluate_spread_leaves_the_synthetic_and_floor_columns_alone(halves, evaluated):
    real, synthetic = halves
    alone = metrics.evaluate(real, synthetic, condition_key="cell_type", n_repeats=0)
    pd.testing.assert_frame_equal(
        alone[["synthetic", "floor"]], evaluated[["synthetic", "floor"]], check_exact=True
    )
    assert alone[["floor_low", "floor_high"]].isna().all().all()
    assert set(alone["verdict"]) == {"not assessed", "no verdict (describes the real cells)"}
    # the spread covers the floor, and more repeats are allowed
    overall = evaluated.loc["all"]
    assert (overall["floor_low"] < overall["floor_high"]).all()
    assert overall["floor"].between(overall["floor_low"], overall["floor_high"]).all()
    for bad in (-1, 1, 2.5, True):
        with pytest.raises(ValueError, match="`n_repeats` must be 0 .* or an integer of at"):
            metrics.evaluate(real, synthetic, n_repeats=bad)


def test_evaluate_floor_column_is_floor(halves, evaluated):
    real, _ = halves
    alone = metrics.floor(real, condition_key="cell_type")
    assert list(alone.columns) == ["floor"]
    pd.testing.assert_series_equal(alone["floor"], evaluated["floor"])
    assert alone.attrs["floor_sizes"] == evaluated.attrs["floor_sizes"]


def test_floor_with_a_reference_and_no_conditions(halves):
    real, reference = halves
    with_reference = metrics.floor(real, reference=reference, n_comps=10)
    assert with_reference.attrs["floor_source"] == "reference"
    assert with_reference.attrs["floor_sizes"] == (real.n_obs // 2, reference.n_obs)
    assert set(with_reference.index.get_level_values("group")) == {"all"}
    assert "conditional_accuracy" not in with_reference.loc["all"].index
    assert with_reference.loc[("all", "rf_auc"), "floor"] < 0.6
    assert with_reference.loc[("all", "mean_pearson"), "floor"] > 0.95


def test_evaluate_leaves_inputs_alone_and_validates(halves):
    # Two cell types keep the per-condition rows few and the test fast.
    two = [adata[adata.obs["cell_type"].isin(["CD14+ Monocyte", "CD19+ B"])] for adata in halves]
    real, synthetic = two[0][:60].copy(), two[1][:60].copy()
    reference = two[1][60:].copy()
    synthetic = synthetic[:, synthetic.var_names[::-1]].copy()
    synthetic.X = synthetic.X.toarray()
    before = [_snapshot(adata) for adata in (real, synthetic, reference)]
    result = metrics.evaluate(real, synthetic, "cell_type", reference=reference, n_comps=10)
    for adata, snapshot in zip((real, synthetic, reference), before, strict=True):
        _assert_unchanged(adata, snapshot)
    assert result.attrs["floor_source"] == "reference"
    with pytest.raises(ValueError, match="'tissue'"):
        metrics.evaluate(real, synthetic, condition_key="tissue")
    no_key = synthetic.copy()
    del no_key.obs["cell_type"]
    with pytest.raises(ValueError, match="'cell_type'.*synthetic"):
        metrics.evaluate(real, no_key, condition_key="cell_type")
    with pytest.raises(ValueError, match="at least 4"):
        metrics.evaluate(real, synthetic[:3])
    with pytest.raises(ValueError, match="lack"):
        metrics.evaluate(real, synthetic[:, 10:])
