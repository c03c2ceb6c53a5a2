"""data.pbmc3k: the labelled PBMC3K cells from the shared local copy (the published recipe's
cells and genes), and clear errors for a missing file, unlabelled data and a failed download."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from scipy import sparse

from scvi_diffusion import data

from ..conftest import PBMC3K, needs_pbmc3k


@needs_pbmc3k
def test_pbmc3k_holds_the_labelled_cells_with_raw_counts():
    adata = data.pbmc3k(PBMC3K)
    assert adata.shape == (2638, 32738)
    assert sparse.issparse(adata.X) and adata.X.dtype == np.float32
    assert np.all(adata.X.data == np.round(adata.X.data))
    counts = adata.obs["cell_type"].value_counts()
    assert counts["CD4 T cells"] == 1144 and counts["Megakaryocytes"] == 15
    assert len(counts) == 8 and adata.obs["cell_type"].notna().all()
    assert "gene_ids" in adata.var
    # the published benchmarks' genes: detected in at least 30 of the labelled cells
    sc.pp.filter_genes(adata, min_cells=30)
    assert adata.n_vars == 8573


def test_pbmc3k_reports_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="No PBMC3K file"):
        data.pbmc3k(tmp_path / "absent.h5ad")


def test_pbmc3k_refuses_files_without_labels_or_counts(tmp_path):
    cells = ad.AnnData(
        sparse.csr_matrix(np.ones((3, 2), dtype=np.float32)),
        obs=pd.DataFrame(index=["a", "b", "c"]),
    )
    cells.write_h5ad(tmp_path / "unlabelled.h5ad")
    with pytest.raises(ValueError, match="no obs\\['cell_type'\\]"):
        data.pbmc3k(tmp_path / "unlabelled.h5ad")
    cells.obs["cell_type"] = pd.Categorical(["T", None, "B"])
    cells.X = sparse.csr_matrix(np.full((3, 2), 0.5, dtype=np.float32))
    cells.write_h5ad(tmp_path / "normalised.h5ad")
    with pytest.raises(ValueError, match="raw integer counts"):
        data.pbmc3k(tmp_path / "normalised.h5ad")
    cells.obs["cell_type"] = pd.Categorical([None, None, None], categories=["T"])
    cells.write_h5ad(tmp_path / "no_types.h5ad")
    with pytest.raises(ValueError, match="No cell has a cell type"):
        data.pbmc3k(tmp_path / "no_types.h5ad")


def test_pbmc3k_without_a_path_says_how_to_get_it_when_the_download_fails(monkeypatch):
    def offline():
        raise OSError("network is unreachable")

    monkeypatch.setattr(sc.datasets, "pbmc3k", offline)
    with pytest.raises(RuntimeError, match="could not download it .*network is unreachable"):
        data.pbmc3k()


def test_pbmc3k_labels_downloaded_counts_with_the_processed_types(monkeypatch):
    raw = ad.AnnData(
        sparse.csr_matrix(np.arange(8, dtype=np.float32).reshape(4, 2)),
        obs=pd.DataFrame(index=["c1", "c2", "c3", "c4"]),
        var=pd.DataFrame({"gene_ids": ["E1", "E2"]}, index=["g1", "g2"]),
    )
    processed = ad.AnnData(
        np.zeros((2, 1), dtype=np.float32),
        obs=pd.DataFrame({"louvain": pd.Categorical(["B cells", "NK cells"])}, index=["c3", "c1"]),
    )
    monkeypatch.setattr(sc.datasets, "pbmc3k", lambda: raw.copy())
    monkeypatch.setattr(sc.datasets, "pbmc3k_processed", lambda: processed.copy())
    adata = data.pbmc3k()
    assert list(adata.obs_names) == ["c1", "c3"]
    assert list(adata.obs["cell_type"]) == ["NK cells", "B cells"]
    assert adata.X.toarray().tolist() == [[0, 1], [4, 5]]
