"""Marker-gene fold changes (metrics.marker_fold_changes): identical cells score 1, blurred cell
types attenuate the slope by a known factor, shuffled labels lose the markers, errors."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from scvi_diffusion import metrics
from scvi_diffusion.data import pbmc68k

pytestmark = pytest.mark.usefixtures("one_blas_thread")


@pytest.fixture(scope="module")
def cells():
    return pbmc68k()


def test_identical_cells_keep_every_fold_change(cells):
    table = metrics.marker_fold_changes(cells, cells, "cell_type", n_genes=10)
    assert np.allclose(table[["pearson", "slope"]], 1.0)
    assert table.loc["all", "n_genes"] == 10 * (len(table) - 1)
    fold_changes = table.attrs["fold_changes"]
    assert set(fold_changes.columns) == {"condition", "gene", "real", "synthetic"}
    assert (fold_changes.groupby("condition").size() == 10).all()
    # up-regulated markers: their real fold changes are positive
    assert (fold_changes["real"] > 0).mean() > 0.95


def test_a_single_condition_is_scored_against_all_other_cells(cells):
    table = metrics.marker_fold_changes(cells, cells, "cell_type", n_genes=5)
    fold_changes = table.attrs["fold_changes"]
    row = fold_changes[fold_changes["condition"] == "CD14+ Monocyte"].iloc[0]
    inside = (cells.obs["cell_type"] == "CD14+ Monocyte").to_numpy()
    counts = cells[:, row["gene"]].X.toarray().ravel()
    library = np.asarray(cells.X.sum(axis=1)).ravel()
    log_expression = np.log1p(counts / library * 1e4)
    expected = log_expression[inside].mean() - log_expression[~inside].mean()
    assert row["real"] == pytest.approx(expected)


def test_cell_types_blurred_halfway_halve_the_slope(cells):
    # every synthetic cell's log expression is the mean of its own and the average cell's, so
    # every fold change is exactly half; a filler gene tops each cell up to 10,000 counts so
    # that normalisation returns exactly these log expressions
    library = np.asarray(cells.X.sum(axis=1)).ravel()
    log_expression = np.log1p(cells.X.toarray() / library[:, None] * 1e4)
    blurred = np.expm1(0.5 * log_expression + 0.5 * log_expression.mean(axis=0))
    filler = 1e4 - blurred.sum(axis=1, keepdims=True)  # >= 0 by convexity of exp
    assert (filler >= 0).all()
    synthetic = ad.AnnData(
        sparse.csr_matrix(np.hstack([blurred, filler])),
        obs=cells.obs.copy(),
        var=pd.DataFrame(index=[*cells.var_names, "filler"]),
    )
    table = metrics.marker_fold_changes(cells, synthetic, "cell_type", n_genes=10)
    assert np.allclose(table["slope"], 0.5)
    assert np.allclose(table["pearson"], 1.0)


def test_shuffled_labels_lose_the_markers(cells):
    shuffled = cells.copy()
    shuffled.obs["cell_type"] = np.random.default_rng(0).permutation(
        shuffled.obs["cell_type"].to_numpy()
    )
    table = metrics.marker_fold_changes(cells, shuffled, "cell_type", n_genes=10)
    assert abs(table.loc["all", "slope"]) < 0.2


def test_conditions_with_too_few_cells_are_skipped(cells):
    few = cells.copy()
    keep = (few.obs["cell_type"] != "CD34+").to_numpy()
    keep[np.flatnonzero(~keep)[:2]] = True  # 2 CD34+ cells
    table = metrics.marker_fold_changes(cells, few[keep].copy(), "cell_type", min_cells=3)
    assert "CD34+" not in table.index
    assert "CD14+ Monocyte" in table.index


def test_marker_fold_changes_errors(cells):
    with pytest.raises(ValueError, match="at least 1"):
        metrics.marker_fold_changes(cells, cells, "cell_type", n_genes=0)
    with pytest.raises(ValueError, match="lack 5 genes"):
        metrics.marker_fold_changes(cells, cells[:, 5:].copy(), "cell_type")
    one_type = cells.copy()
    one_type.obs["cell_type"] = pd.Categorical(["only"] * one_type.n_obs)
    with pytest.raises(ValueError, match="nothing to score"):
        metrics.marker_fold_changes(one_type, one_type, "cell_type")
