"""setup_anndata variants and bad input at setup time."""

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from scvi_diffusion import ScDiffusion
from scvi_diffusion._constants import condition_registry_key


def snapshot(adata):
    X = adata.X.toarray() if sparse.issparse(adata.X) else np.asarray(adata.X).copy()
    return X.copy(), adata.obs.copy(), set(adata.uns.keys()), set(adata.layers.keys())


def assert_untouched(adata, before):
    X, obs, uns, layers = before
    now = adata.X.toarray() if sparse.issparse(adata.X) else np.asarray(adata.X)
    np.testing.assert_array_equal(now, X)
    user_columns = [c for c in adata.obs.columns if not c.startswith("_scvi")]
    assert user_columns == list(obs.columns)
    pd.testing.assert_frame_equal(adata.obs[user_columns], obs)
    assert {k for k in adata.uns if not k.startswith("_scvi")} == {
        k for k in uns if not k.startswith("_scvi")
    }
    assert set(adata.layers.keys()) == layers


def registered_fields(adata):
    manager = ScDiffusion._get_most_recent_anndata_manager(adata)
    return set(manager.data_registry.keys())


def test_no_keys_is_unconditional(pbmc):
    before = snapshot(pbmc)
    ScDiffusion.setup_anndata(pbmc)
    model = ScDiffusion(pbmc)
    assert model.condition_keys == []
    assert len(model.module.guidance.classifiers) == 0
    assert_untouched(pbmc, before)


@pytest.mark.parametrize(
    ("kwargs", "expected_keys", "roles"),
    [
        ({"cell_type_key": "cell_type"}, ["cell_type"], {"cell_type": "cell_type"}),
        ({"tissue_key": "louvain"}, ["louvain"], {"tissue": "louvain"}),
        (
            {"cell_type_key": "cell_type", "condition_keys": ["phase", "cell_type"]},
            ["cell_type", "phase"],
            {"cell_type": "cell_type"},
        ),
        ({"condition_keys": "phase"}, ["phase"], {}),
        (
            {"cell_type_key": "cell_type", "tissue_key": "louvain", "condition_keys": ["phase"]},
            ["cell_type", "louvain", "phase"],
            {"cell_type": "cell_type", "tissue": "louvain"},
        ),
    ],
)
def test_condition_variants(pbmc, kwargs, expected_keys, roles):
    before = snapshot(pbmc)
    ScDiffusion.setup_anndata(pbmc, **kwargs)
    model = ScDiffusion(pbmc, guidance="classifier")
    assert model.condition_keys == expected_keys
    assert model.condition_roles == roles
    for key in expected_keys:
        assert condition_registry_key(key) in registered_fields(pbmc)
        assert list(model._categories(key)) == list(pbmc.obs[key].cat.categories)
    assert [c.head.out_features for c in model.module.guidance.classifiers] == [
        pbmc.obs[k].nunique() for k in expected_keys
    ]
    assert_untouched(pbmc, before)


def test_layer_and_batch_key(pbmc):
    pbmc.layers["counts"] = pbmc.X.copy()
    pbmc.X = sparse.csr_matrix(np.log1p(pbmc.X.toarray()))  # X is not counts; the layer is
    pbmc.obs["batch"] = np.where(np.arange(pbmc.n_obs) % 2, "a", "b")
    before = snapshot(pbmc)
    ScDiffusion.setup_anndata(pbmc, layer="counts", cell_type_key="cell_type", batch_key="batch")
    model = ScDiffusion(pbmc)
    assert model.summary_stats.n_batch == 2
    assert_untouched(pbmc, before)


def test_dense_integer_counts_are_accepted(pbmc):
    pbmc.X = pbmc.X.toarray().astype(np.int64)
    ScDiffusion.setup_anndata(pbmc, cell_type_key="cell_type")
    assert ScDiffusion(pbmc).summary_stats.n_vars == pbmc.n_vars


def _non_integer(adata):
    adata.X = adata.X * 0.5


def _negative(adata):
    X = adata.X.toarray()
    X[0, 0] = -1
    adata.X = X


def _nan(adata):
    X = adata.X.toarray()
    X[3, 4] = np.nan
    adata.X = X


def _inf(adata):
    X = adata.X.toarray()
    X[3, 4] = np.inf
    adata.X = sparse.csr_matrix(X)


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (_non_integer, "non-integer"),
        (_negative, "negative"),
        (_nan, "NaN or infinite"),
        (_inf, "NaN or infinite"),
    ],
)
def test_bad_counts_raise_and_leave_adata_untouched(pbmc, corrupt, message):
    corrupt(pbmc)
    before = snapshot(pbmc)
    with pytest.raises(ValueError, match=message):
        ScDiffusion.setup_anndata(pbmc, cell_type_key="cell_type")
    assert_untouched(pbmc, before)
    assert not any(c.startswith("_scvi") for c in pbmc.obs.columns)


def test_non_integer_counts_name_the_likelihood_in_use(pbmc):
    _non_integer(pbmc)
    with pytest.raises(ValueError, match="non-integer") as error:
        ScDiffusion.setup_anndata(pbmc, cell_type_key="cell_type")
    assert "Poisson by default" in str(error.value)
    assert "the negative binomial likelihood needs" not in str(error.value)


def test_empty_anndata(pbmc):
    with pytest.raises(ValueError, match="0 cells x 765 genes"):
        ScDiffusion.setup_anndata(pbmc[:0].copy())
    with pytest.raises(ValueError, match="at least one cell and 2 genes"):
        ScDiffusion.setup_anndata(pbmc[:, :1].copy())
    with pytest.raises(ValueError, match="is a view"):
        ScDiffusion.setup_anndata(pbmc[:10])


def test_missing_column_and_missing_values(pbmc):
    with pytest.raises(ValueError, match="not a column of adata.obs"):
        ScDiffusion.setup_anndata(pbmc, cell_type_key="celltype")
    with pytest.raises(ValueError, match="'' is not a column of adata.obs"):
        ScDiffusion.setup_anndata(pbmc, batch_key="")
    pbmc.obs["cell_type"] = pbmc.obs["cell_type"].astype(object)
    pbmc.obs.iloc[5, pbmc.obs.columns.get_loc("cell_type")] = np.nan
    before = snapshot(pbmc)
    with pytest.raises(ValueError, match="missing values"):
        ScDiffusion.setup_anndata(pbmc, cell_type_key="cell_type")
    assert_untouched(pbmc, before)


def test_missing_layer(pbmc):
    with pytest.raises(ValueError, match="Layer 'counts' not found"):
        ScDiffusion.setup_anndata(pbmc, layer="counts")


def test_default_guidance_is_classifier_free_but_the_paper_setup_keeps_classifiers(pbmc):
    ScDiffusion.setup_anndata(pbmc, cell_type_key="cell_type")
    assert ScDiffusion(pbmc).guidance == "classifier_free"
    assert ScDiffusion(pbmc, autoencoder="mlp").guidance == "classifier"
    chosen = ScDiffusion(pbmc, autoencoder="mlp", guidance="classifier_free")
    assert chosen.guidance == "classifier_free"
    assert chosen.init_params_["non_kwargs"]["guidance"] == "classifier_free"
