"""ScDiffusion.from_scvi_model: a trained scVI model's VAE as the autoencoder."""

import numpy as np
import pytest
import scvi
import torch

import scvi_diffusion
from scvi_diffusion import ScDiffusion

from ..conftest import quiet_train, same_state


def _pbmc_with_batches():
    adata = scvi_diffusion.data.pbmc68k()
    adata.obs["batch"] = np.where(np.arange(adata.n_obs) % 2, "b2", "b1")
    return adata


def _trained_scvi(adata, **kwargs):
    scvi.settings.seed = 0
    vae = scvi.model.SCVI(adata, n_latent=6, gene_likelihood="poisson", **kwargs)
    vae.train(max_epochs=2, enable_progress_bar=False, enable_model_summary=False, logger=None)
    return vae


@pytest.fixture(scope="module")
def scvi_model():
    adata = _pbmc_with_batches()
    scvi.model.SCVI.setup_anndata(adata, batch_key="batch")
    return _trained_scvi(adata)


def _same_weights(module_a, module_b) -> bool:
    return same_state(module_a.state_dict(), module_b.state_dict())


def test_takes_the_vae_and_trains_only_the_latent_stages(scvi_model, tmp_path):
    adata = scvi_model.adata.copy()
    model = ScDiffusion.from_scvi_model(
        scvi_model, adata, cell_type_key="cell_type", guidance="classifier"
    )
    assert model.trained_stages_ == ["vae"]
    assert model.condition_keys == ["cell_type"]
    assert model.module.n_latent == 6
    assert _same_weights(model.module.autoencoder, scvi_model.module)
    np.testing.assert_allclose(
        model.get_latent_representation(),
        scvi_model.get_latent_representation(adata),
        rtol=1e-5,
        atol=1e-6,
    )
    assert set(model.history) == {f"vae_{key}" for key in scvi_model.history}
    with pytest.raises(ValueError, match=r"\['diffusion', 'classifier'\] are not trained"):
        model.generate(n=5)

    quiet_train(model, max_epochs=2)
    assert set(model.trained_stages_) == {"vae", "diffusion", "classifier"}
    # the latent stages were trained in the standardisation of the pretrained VAE's latents
    latents = torch.as_tensor(model.get_latent_representation())
    torch.testing.assert_close(model.module.diffusion.latent_loc, latents.mean(0))
    torch.testing.assert_close(model.module.diffusion.latent_scale, latents.std(0))
    assert _same_weights(model.module.autoencoder, scvi_model.module)  # the VAE is untouched
    assert any(key.startswith("diffusion_") for key in model.history)
    assert any(key.startswith("vae_") for key in model.history)
    syn = model.generate(n=20, cell_type="CD14+ Monocyte", seed=0, progress_bar=False)
    assert syn.shape == (20, adata.n_vars)
    assert (syn.obs["cell_type"] == "CD14+ Monocyte").all()
    assert set(syn.obs["batch"]) <= {"b1", "b2"}

    model.save(tmp_path / "model")
    loaded = ScDiffusion.load(tmp_path / "model", adata=adata)
    assert loaded.pretrained_autoencoder_
    assert _same_weights(loaded.module, model.module)
    loaded_syn = loaded.generate(n=20, cell_type="CD14+ Monocyte", seed=0, progress_bar=False)
    assert (loaded_syn.X != syn.X).nnz == 0
    # a retrained pretrained model still leaves its VAE alone by default
    quiet_train(loaded, max_epochs=1)
    assert _same_weights(loaded.module.autoencoder, scvi_model.module)


def test_uses_an_existing_registration(scvi_model):
    adata = scvi_model.adata.copy()
    ScDiffusion.setup_anndata(adata, cell_type_key="cell_type", batch_key="batch")
    model = ScDiffusion.from_scvi_model(scvi_model, adata, guidance="classifier_free")
    assert model.condition_keys == ["cell_type"]
    assert model.guidance == "classifier_free"


def test_registration_must_match_the_scvi_model(scvi_model):
    adata = scvi_model.adata.copy()
    ScDiffusion.setup_anndata(adata, cell_type_key="cell_type")  # no batch key
    with pytest.raises(ValueError, match="batch_key=None, but the scVI model uses"):
        ScDiffusion.from_scvi_model(scvi_model, adata)


def test_defaults_to_the_scvi_models_anndata():
    adata = scvi_diffusion.data.pbmc68k()
    scvi.model.SCVI.setup_anndata(adata)
    vae = _trained_scvi(adata)
    model = ScDiffusion.from_scvi_model(vae)
    assert model.adata is adata
    assert model.condition_keys == []


@pytest.mark.parametrize(
    ("given", "error", "match"),
    [
        ({"n_latent": 8}, TypeError, r"\['n_latent'\] come from the scVI model"),
        ({"autoencoder": "mlp"}, TypeError, "come from the scVI model"),
        ({"guidance": "both"}, ValueError, "Unknown guidance"),
    ],
)
def test_bad_arguments(scvi_model, given, error, match):
    with pytest.raises(error, match=match):
        ScDiffusion.from_scvi_model(scvi_model, scvi_model.adata.copy(), **given)


def test_refuses_other_data_and_leaves_it_untouched(scvi_model):
    fewer_genes = scvi_model.adata[:, :-1].copy()
    uns_before = set(fewer_genes.uns)
    with pytest.raises(ValueError, match="genes differ"):
        ScDiffusion.from_scvi_model(scvi_model, fewer_genes, cell_type_key="cell_type")
    assert set(fewer_genes.uns) == uns_before

    other_batches = scvi_model.adata.copy()
    other_batches.obs["batch"] = "b3"
    with pytest.raises(ValueError, match=r"has the batches \['b3'\]; the scVI model"):
        ScDiffusion.from_scvi_model(scvi_model, other_batches, cell_type_key="cell_type")

    with pytest.raises(TypeError, match="must be an AnnData"):
        ScDiffusion.from_scvi_model(scvi_model, "cells.h5ad")


def test_refuses_unsupported_scvi_models():
    adata = scvi_diffusion.data.pbmc68k()
    with pytest.raises(TypeError, match="must be a trained scvi.model.SCVI"):
        ScDiffusion.from_scvi_model(adata)

    scvi.model.SCVI.setup_anndata(adata)
    with pytest.raises(ValueError, match="not trained"):
        ScDiffusion.from_scvi_model(scvi.model.SCVI(adata))

    covariates = adata.copy()
    scvi.model.SCVI.setup_anndata(covariates, categorical_covariate_keys=["phase"])
    with pytest.raises(ValueError, match="categorical covariates"):
        ScDiffusion.from_scvi_model(_trained_scvi(covariates))

    labels = adata.copy()
    scvi.model.SCVI.setup_anndata(labels, labels_key="cell_type")
    with pytest.raises(ValueError, match="dispersion='gene-label'"):
        ScDiffusion.from_scvi_model(_trained_scvi(labels, dispersion="gene-label"))


def test_scvi_options_carry_over(tmp_path):
    adata = scvi_diffusion.data.pbmc68k()
    scvi.model.SCVI.setup_anndata(adata)
    vae = _trained_scvi(adata, use_layer_norm="both", use_batch_norm="none")
    model = ScDiffusion.from_scvi_model(vae, cell_type_key="cell_type")
    assert model.init_params_["non_kwargs"]["autoencoder_kwargs"] == {
        "latent_distribution": "normal",
        "use_layer_norm": "both",
        "use_batch_norm": "none",
    }
    assert _same_weights(model.module.autoencoder, vae.module)


@pytest.mark.parametrize(
    ("given", "error", "match"),
    [
        ({"autoencoder_kwargs": ["use_layer_norm"]}, TypeError, "must be a dict"),
        ({"autoencoder_kwargs": {"n_cats_per_cov": [2]}}, ValueError, "cannot pass"),
        ({"autoencoder_kwargs": {"var_activation": torch.exp}}, ValueError, "store safely"),
        (
            {"autoencoder": "mlp", "autoencoder_kwargs": {"use_layer_norm": "both"}},
            ValueError,
            "apply to autoencoder='scvi' only",
        ),
    ],
)
def test_autoencoder_kwargs_are_checked(pbmc, given, error, match):
    ScDiffusion.setup_anndata(pbmc, cell_type_key="cell_type")
    with pytest.raises(error, match=match):
        ScDiffusion(pbmc, **given)


def test_autoencoder_kwargs_reach_the_vae(pbmc):
    ScDiffusion.setup_anndata(pbmc, cell_type_key="cell_type")
    model = ScDiffusion(pbmc, autoencoder_kwargs={"use_layer_norm": "both"})
    layer_norms = [
        m for m in model.module.autoencoder.modules() if isinstance(m, torch.nn.LayerNorm)
    ]
    assert layer_norms
