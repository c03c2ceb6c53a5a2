"""CFGen's published scoring protocol (metrics.cfgen_scores and its distances): known answers,
an independent re-computation of the protocol with scanpy and POT, skipped groups and errors."""

import math

import numpy as np
import ot
import pytest
import scanpy as sc
from scipy import sparse

from scvi_diffusion import metrics
from scvi_diffusion.data import pbmc68k

pytestmark = pytest.mark.usefixtures("one_blas_thread")


@pytest.fixture(scope="module")
def split():
    return metrics.stratified_split(pbmc68k(), "cell_type", test_size=0.3, random_state=0)


def test_biased_mmd_of_two_points_is_the_sum_of_its_gaussians():
    x, y = np.zeros((1, 3)), np.array([[0.0, 3.0, 4.0]])  # 5 apart
    expected = sum(2 - 2 * math.exp(-25 / (2 * s**2)) for s in (0.01, 0.1, 1, 10, 100))
    assert metrics.mmd_rbf_biased(x, y) == pytest.approx(expected, rel=1e-12)
    assert metrics.mmd_rbf_biased(x, y, sigmas=[5.0]) == pytest.approx(2 - 2 * math.exp(-0.5))


def test_biased_mmd_is_zero_for_identical_sets_and_keeps_its_diagonal():
    points = np.random.default_rng(0).normal(size=(30, 4))
    assert metrics.mmd_rbf_biased(points, points) == pytest.approx(0.0, abs=1e-12)
    # two different samples of one distribution: the V-statistic is positive
    other = np.random.default_rng(1).normal(size=(30, 4))
    assert metrics.mmd_rbf_biased(points, other) > 0


def test_biased_mmd_refuses_non_positive_widths():
    with pytest.raises(ValueError, match="positive widths"):
        metrics.mmd_rbf_biased(np.zeros((2, 2)), np.ones((2, 2)), sigmas=[1.0, 0.0])


@pytest.mark.parametrize("power", [1, 2])
def test_exact_wasserstein_of_a_translate_is_the_shift(power):
    x = np.random.default_rng(0).normal(size=(25, 3))
    shift = np.array([1.0, 2.0, 2.0])
    assert metrics.wasserstein_exact(x, x + shift, power=power) == pytest.approx(3.0)


def test_exact_wasserstein_on_a_line_matches_sorted_matching():
    x, y = np.array([[0.0], [1.0]]), np.array([[3.0], [5.0]])
    assert metrics.wasserstein_exact(x, y, power=1) == pytest.approx((3 + 4) / 2)
    assert metrics.wasserstein_exact(x, y, power=2) == pytest.approx(math.sqrt((9 + 16) / 2))
    # unequal sizes: every point of x carries 1/2, of y 1/3 and 2/3 of it goes to each
    z = np.array([[2.0], [2.0], [2.0]])
    assert metrics.wasserstein_exact(x, z, power=1) == pytest.approx((2 + 1) / 2)


def test_exact_wasserstein_refuses_other_powers():
    with pytest.raises(ValueError, match="1 or 2"):
        metrics.wasserstein_exact(np.zeros((2, 2)), np.ones((2, 2)), power=3)


def _protocol_by_hand(real, synthetic, key, n_top_genes=300, n_comps=10):
    """The published recipe step by step with scanpy's own functions, as the papers ran it."""
    real = real.copy()
    hvg = sc.pp.highly_variable_genes(
        real, n_top_genes=n_top_genes, flavor="seurat_v3", inplace=False
    )["highly_variable"].to_numpy()
    sc.pp.normalize_total(real, target_sum=1e4)
    sc.pp.log1p(real)
    real = real[:, hvg].copy()
    real.X = real.X.toarray() if sparse.issparse(real.X) else real.X
    sc.tl.pca(real, n_comps=n_comps)
    synthetic = synthetic.copy()
    sc.pp.normalize_total(synthetic, target_sum=1e4)
    sc.pp.log1p(synthetic)
    synthetic = synthetic[:, real.var_names]
    dense = synthetic.X.toarray() if sparse.issparse(synthetic.X) else synthetic.X
    projected = (dense - np.asarray(real.X).mean(axis=0)) @ real.varm["PCs"]
    scores = {}
    for group in real.obs[key].unique():
        x = real.obsm["X_pca"][(real.obs[key] == group).to_numpy()]
        y = projected[(synthetic.obs[key] == group).to_numpy()]
        cost = ot.dist(x, y, metric="sqeuclidean")
        scores[group] = math.sqrt(ot.emd2(ot.unif(len(x)), ot.unif(len(y)), cost))
    return scores


def test_cfgen_scores_reproduce_the_recipe_step_by_step(split):
    train, test = split
    table = metrics.cfgen_scores(test, train, "cell_type", n_top_genes=300, n_comps=10)
    by_hand = _protocol_by_hand(test, train, "cell_type")
    for group, w2 in by_hand.items():
        assert table.loc[group, "w2"] == pytest.approx(w2, rel=1e-4), group


def test_cfgen_scores_of_identical_or_rescaled_cells_are_zero(split):
    _, test = split
    table = metrics.cfgen_scores(test, test, "cell_type")
    assert np.allclose(table[["w1", "w2", "mmd"]], 0.0, atol=1e-6)
    # counts doubled in every cell: normalize_total makes them the same cells
    doubled = test.copy()
    doubled.X = doubled.X * 2
    table = metrics.cfgen_scores(test, doubled, "cell_type")
    assert np.allclose(table[["w1", "w2", "mmd"]], 0.0, atol=1e-6)


def test_cfgen_scores_mean_row_and_counts(split):
    train, test = split
    table = metrics.cfgen_scores(test, train, "cell_type")
    groups = table.drop(index="mean")
    assert list(table.columns) == ["w1", "w2", "mmd", "n_real", "n_synthetic"]
    assert table.loc["mean", "w2"] == pytest.approx(groups["w2"].mean())
    assert table.loc["mean", "mmd"] == pytest.approx(groups["mmd"].mean())
    assert table.loc["mean", "n_real"] == test.n_obs
    assert (groups["w2"] > 0).all() and (groups["w1"] <= groups["w2"] + 1e-9).all()
    # other cells of the right type are nearer than the wrong type's
    swapped = train.copy()
    swapped.obs["cell_type"] = np.random.default_rng(0).permutation(
        swapped.obs["cell_type"].to_numpy()
    )
    shuffled = metrics.cfgen_scores(test, swapped, "cell_type")
    assert shuffled.loc["mean", "w2"] > table.loc["mean", "w2"]


def test_cfgen_scores_skip_groups_with_one_cell(split):
    train, test = split
    lonely = train.copy()
    keep = (lonely.obs["cell_type"] != "CD34+").to_numpy()
    keep[np.flatnonzero(~keep)[1:]] = False  # a single CD34+ cell left
    table = metrics.cfgen_scores(test, lonely[keep].copy(), "cell_type")
    assert "CD34+" not in table.index
    assert table.attrs["skipped"] == ["CD34+"]


def test_cfgen_scores_errors(split):
    train, test = split
    with pytest.raises(ValueError, match="lack 5 genes"):
        metrics.cfgen_scores(test, train[:, 5:].copy(), "cell_type", n_top_genes=10_000)
    with pytest.raises(ValueError, match="not a column of obs"):
        metrics.cfgen_scores(test, train, "tissue")
    other = train.copy()
    other.obs["cell_type"] = "none of these"
    with pytest.raises(ValueError, match="nothing to score"):
        metrics.cfgen_scores(test, other, "cell_type")
