"""The paper's setup: ``ScDiffusion(adata, autoencoder="mlp")``."""

import numpy as np
import pytest
import scvi
import torch

import scvi_diffusion
from scvi_diffusion import ScDiffusion

from ..conftest import quiet_train

FAST = {"n_steps": 10, "progress_bar": False}


@pytest.fixture(scope="module")
def mlp_model():
    scvi.settings.seed = 0
    adata = scvi_diffusion.data.pbmc68k()
    ScDiffusion.setup_anndata(adata, cell_type_key="cell_type")
    model = ScDiffusion(adata, autoencoder="mlp")
    return quiet_train(model, max_epochs=3)


def test_architecture(mlp_model):
    module = mlp_model.module
    assert module.autoencoder_kind == "mlp"
    assert module.n_latent == 128
    assert "MLP autoencoder" in mlp_model._model_summary_string
    z = mlp_model.get_latent_representation()
    assert z.shape == (mlp_model.adata.n_obs, 128)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, rtol=1e-5)


def test_encoding_and_decoding_do_not_depend_on_the_batch(mlp_model):
    # BatchNorm must use its running statistics outside training
    alone = mlp_model.get_latent_representation(indices=[5])
    together = mlp_model.get_latent_representation(indices=np.arange(50))[5:6]
    np.testing.assert_allclose(alone, together, rtol=1e-5, atol=1e-6)
    module = mlp_model.module
    z = torch.as_tensor(mlp_model.get_latent_representation(indices=np.arange(40)))
    library = torch.full((40,), 2000.0)
    batch = torch.zeros(40, dtype=torch.long)
    _, fractions_all = module.decode(z, library, batch)
    _, fractions_one = module.decode(z[:1], library[:1], batch[:1])
    torch.testing.assert_close(fractions_one, fractions_all[:1])
    torch.testing.assert_close(fractions_all.sum(-1), torch.ones(40))


def test_defaults_to_the_paper_sampler(mlp_model):
    syn = mlp_model.generate(n=4, cell_type="CD19+ B", seed=0, progress_bar=False)
    params = syn.uns["scdiffusion"]
    assert params["sampler"] == "ddpm" and params["n_steps"] == 1000


def test_generate_counts_and_normalized(mlp_model):
    counts = mlp_model.generate(n=25, cell_type="CD14+ Monocyte", seed=1, **FAST)
    assert counts.shape == (25, mlp_model.adata.n_vars)
    values = counts.X.toarray()
    assert (values >= 0).all() and np.array_equal(values, np.round(values))
    assert (counts.obs["cell_type"] == "CD14+ Monocyte").all()
    normalized = mlp_model.generate(n=5, output="normalized", seed=1, **FAST)
    np.testing.assert_allclose(normalized.X.sum(1), 1e4, rtol=1e-4)
    again = mlp_model.generate(n=25, cell_type="CD14+ Monocyte", seed=1, **FAST)
    np.testing.assert_array_equal(values, again.X.toarray())


def test_save_load_identity(mlp_model, tmp_path):
    before = mlp_model.generate(n=10, seed=3, **FAST)
    mlp_model.save(str(tmp_path / "mlp"), overwrite=True)
    loaded = ScDiffusion.load(str(tmp_path / "mlp"), adata=mlp_model.adata)
    assert loaded.module.autoencoder_kind == "mlp"
    after = loaded.generate(n=10, seed=3, **FAST)
    np.testing.assert_array_equal(before.X.toarray(), after.X.toarray())


def test_unknown_autoencoder(pbmc):
    ScDiffusion.setup_anndata(pbmc, cell_type_key="cell_type")
    with pytest.raises(ValueError, match=r"Unknown autoencoder 'vae'.*\['scvi', 'mlp'\]"):
        ScDiffusion(pbmc, autoencoder="vae")
