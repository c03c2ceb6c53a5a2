"""Synthetic AnnData in scanpy and anndata: preprocessing, marker genes, plots, concatenation."""

import anndata as ad
import matplotlib
import numpy as np
import pandas as pd
import pytest
import scanpy as sc

matplotlib.use("Agg")

GEN = {"n_steps": 5, "progress_bar": False, "seed": 0}


@pytest.fixture(scope="module")
def synthetic(tiny_model):
    types = ["CD14+ Monocyte", "CD19+ B", "CD56+ NK"]
    return tiny_model.generate(conditions={"cell_type": np.repeat(types, 40)}, **GEN)


def test_normalize_log1p_and_marker_genes(synthetic):
    adata = synthetic.copy()
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    totals = np.asarray(np.expm1(adata.X).sum(axis=1)).ravel()
    np.testing.assert_allclose(totals[totals > 0], 1e4, rtol=1e-3)
    sc.tl.rank_genes_groups(adata, "cell_type", method="wilcoxon")
    names = pd.DataFrame(adata.uns["rank_genes_groups"]["names"])
    assert list(names.columns) == ["CD14+ Monocyte", "CD19+ B", "CD56+ NK"]
    assert set(names.iloc[0]) <= set(adata.var_names)
    sc.pp.pca(adata, n_comps=10)
    sc.pp.neighbors(adata)
    sc.tl.umap(adata)
    figure = sc.pl.umap(adata, color="cell_type", return_fig=True, show=False)
    assert [t.get_text() for t in figure.axes[0].get_legend().get_texts()] == list(names.columns)


def test_concat_with_real_cells_of_other_types_unions_categories(tiny_model, synthetic):
    monocytes = tiny_model.adata[tiny_model.adata.obs["cell_type"] == "CD14+ Monocyte"].copy()
    monocytes.obs["cell_type"] = monocytes.obs["cell_type"].cat.remove_unused_categories()
    combined = ad.concat([monocytes, synthetic], join="inner", index_unique="-")
    assert isinstance(combined.obs["cell_type"].dtype, pd.CategoricalDtype)
    assert set(combined.obs["cell_type"].cat.categories) == {
        "CD14+ Monocyte",
        "CD19+ B",
        "CD56+ NK",
    }
    assert combined.obs["cell_type"].value_counts()["CD14+ Monocyte"] == monocytes.n_obs + 40


def test_umap_of_real_and_synthetic_together(tiny_model, synthetic, tmp_path):
    real = tiny_model.adata
    combined = ad.concat(
        {"real": real, "synthetic": synthetic}, label="origin", join="inner", index_unique="-"
    )
    # the synthetic cells' categories are a subset of the real ones': concat keeps the
    # column categorical with the real categories
    assert isinstance(combined.obs["cell_type"].dtype, pd.CategoricalDtype)
    assert set(combined.obs["cell_type"].cat.categories) == set(
        real.obs["cell_type"].cat.categories
    )
    pd.testing.assert_series_equal(
        combined.obs["cell_type"].iloc[real.n_obs :].astype(str),
        synthetic.obs["cell_type"].astype(str),
        check_index=False,
    )
    assert combined.obs["origin"].value_counts().to_dict() == {
        "real": real.n_obs,
        "synthetic": synthetic.n_obs,
    }
    assert combined.obs_names.is_unique
    sc.pp.normalize_total(combined)
    sc.pp.log1p(combined)
    sc.pp.pca(combined, n_comps=10)
    sc.pp.neighbors(combined)
    sc.tl.umap(combined)
    figure = sc.pl.umap(combined, color=["origin", "cell_type"], return_fig=True, show=False)
    figure.savefig(tmp_path / "umap.png")
    assert (tmp_path / "umap.png").stat().st_size > 0


def test_synthetic_anndata_writes_and_reads_back(synthetic, tmp_path):
    synthetic.write_h5ad(tmp_path / "synthetic.h5ad")
    again = ad.read_h5ad(tmp_path / "synthetic.h5ad")
    np.testing.assert_array_equal(again.X.toarray(), synthetic.X.toarray())
    pd.testing.assert_frame_equal(again.obs, synthetic.obs)
    assert again.uns["scdiffusion"]["sampler"] == synthetic.uns["scdiffusion"]["sampler"]


@pytest.mark.integration
def test_neighbours_and_umap_helper_past_8192_cells():
    """From 8,192 cells (4,096 with a non-euclidean metric) scanpy's neighbours switch from
    exact ones to pynndescent's; in a fresh install that path failed (pynndescent 0.7's sparse
    arrays lack the ``getnnz`` that scipy 1.17 removed)."""
    from scvi_diffusion import data, pl

    # 8,400 cells together, as in the helper's joint embedding
    real = data.pbmc68k_bootstrap(n_obs=4200, n_vars=300, seed=0)
    synthetic = data.pbmc68k_bootstrap(n_obs=4200, n_vars=300, seed=1)
    adata = ad.concat([real, synthetic], index_unique="-")
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    sc.pp.pca(adata, n_comps=10)
    sc.pp.neighbors(adata)
    assert adata.obsp["distances"].shape == (8400, 8400)
    neighbours = np.diff(adata.obsp["distances"].indptr)
    assert neighbours.min() >= 14 and neighbours.max() <= 15 + 1

    figure = pl.umap_real_vs_synthetic(real, synthetic, color="cell_type")
    umap = np.vstack([c.get_offsets() for c in figure.axes[0].collections])
    assert umap.shape[0] == 8400
    assert np.isfinite(umap).all()
