"""Bigger data: bootstrapped PBMC counts, training on backed (on-disk) AnnData."""

import anndata as ad
import numpy as np
import pytest
import scvi
from scipy import sparse

import scvi_diffusion
from scvi_diffusion import ScDiffusion
from scvi_diffusion.train._stages import n_processes


def test_bootstrap_resamples_real_cells_and_extends_genes():
    source = scvi_diffusion.data.pbmc68k()
    adata = scvi_diffusion.data.pbmc68k_bootstrap(n_obs=3_000, n_vars=2_000, seed=1)
    assert adata.shape == (3_000, 2_000)
    assert sparse.isspmatrix_csr(adata.X) and adata.X.dtype == np.float32
    np.testing.assert_array_equal(adata.X.data, np.round(adata.X.data))
    assert adata.var_names.is_unique
    assert list(adata.var_names[:765]) == list(source.var_names)
    assert adata.var_names[765] == f"{source.var_names[0]}-copy1"
    # each cell keeps the cell type of the real cell it was drawn from
    drawn = source.obs.loc[adata.obs["source_cell"], "cell_type"].to_numpy()
    np.testing.assert_array_equal(adata.obs["cell_type"].to_numpy(), drawn)
    # counts are Poisson around the real ones: the library sizes follow the drawn cells'
    real_library = np.asarray(source.X.sum(1)).ravel()
    drawn_library = real_library[source.obs_names.get_indexer(adata.obs["source_cell"])]
    library = np.asarray(adata.X[:, :765].sum(1)).ravel()
    assert np.corrcoef(library, drawn_library)[0, 1] > 0.99
    again = scvi_diffusion.data.pbmc68k_bootstrap(n_obs=3_000, n_vars=2_000, seed=1)
    assert (again.X != adata.X).nnz == 0
    fewer = scvi_diffusion.data.pbmc68k_bootstrap(n_obs=10, n_vars=100)
    assert list(fewer.var_names) == list(source.var_names[:100])


def test_bootstrap_to_disk_equals_in_memory(tmp_path):
    in_memory = scvi_diffusion.data.pbmc68k_bootstrap(n_obs=1_200, n_vars=900, seed=2)
    backed = scvi_diffusion.data.pbmc68k_bootstrap(
        n_obs=1_200, n_vars=900, seed=2, out=tmp_path / "boot.h5ad"
    )
    assert backed.isbacked
    assert (backed.X[:] != in_memory.X).nnz == 0
    assert list(backed.obs_names) == list(in_memory.obs_names)
    for column in ("cell_type", "source_cell"):
        assert list(backed.obs[column]) == list(in_memory.obs[column])
    backed.file.close()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"n_obs": 0}, ValueError, "n_obs"),
        ({"n_vars": 2.5}, TypeError, "n_vars"),
        ({"seed": "a"}, TypeError, "seed"),
        ({"out": "x.csv"}, ValueError, "h5ad"),
    ],
)
def test_bootstrap_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        scvi_diffusion.data.pbmc68k_bootstrap(**kwargs)


def test_training_on_backed_anndata_reads_minibatches_from_disk(tmp_path):
    path = tmp_path / "cells.h5ad"
    scvi_diffusion.data.pbmc68k_bootstrap(n_obs=3_000, n_vars=800, seed=0, out=path).file.close()
    adata = ad.read_h5ad(path, backed="r")
    scvi.settings.seed = 0
    ScDiffusion.setup_anndata(adata, cell_type_key="cell_type")
    model = ScDiffusion(adata)
    model.train(max_epochs=2, enable_progress_bar=False, enable_model_summary=False)
    # the counts stayed on disk: still backed, never loaded into the AnnData
    assert adata.isbacked and not isinstance(adata.X, np.ndarray | sparse.spmatrix)
    syn = model.generate(n=200, cell_type="CD14+ Monocyte", seed=0, progress_bar=False)
    assert syn.shape == (200, 800)
    # the same cells in memory give the same library sizes to draw from
    library = model._reference()["_library"].to_numpy()
    in_memory = ad.read_h5ad(path)
    np.testing.assert_allclose(library, np.maximum(np.asarray(in_memory.X.sum(1)).ravel(), 1))
    adata.file.close()


@pytest.mark.parametrize(
    ("devices", "trainer_kwargs", "expected"),
    [
        ("auto", {}, 1),
        (1, {}, 1),
        (2, {}, 2),
        (2, {"strategy": "ddp"}, 2),
        (2, {"strategy": "auto"}, 2),
        (1, {"strategy": "ddp"}, 1),
        (2, {"num_nodes": 3}, 6),
    ],
)
def test_number_of_training_processes(devices, trainer_kwargs, expected):
    assert n_processes("cpu", devices, trainer_kwargs) == expected
