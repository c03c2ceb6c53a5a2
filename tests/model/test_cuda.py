"""The CUDA path: training, guidance gradients and sampling on a GPU.

CI has no GPU, so these tests skip there; they run wherever ``torch.cuda.is_available()``.
"""

import numpy as np
import pytest
import torch

import scvi_diffusion
from scvi_diffusion import ScDiffusion

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

GEN = {"n_steps": 10, "progress_bar": False}


@pytest.fixture(scope="module", params=["classifier", "classifier_free"])
def gpu_model(request):
    adata = scvi_diffusion.data.pbmc68k()
    ScDiffusion.setup_anndata(adata, cell_type_key="cell_type")
    model = ScDiffusion(adata, guidance=request.param)
    model.train(max_epochs=3, accelerator="gpu", devices=1, enable_progress_bar=False, logger=None)
    return model


def test_model_trains_and_stays_on_the_gpu(gpu_model):
    assert gpu_model.device.type == "cuda"
    assert all(p.device.type == "cuda" for p in gpu_model.module.parameters())


def test_guided_sampling_runs_on_the_gpu(gpu_model):
    syn = gpu_model.generate(n=300, cell_type="CD14+ Monocyte", seed=0, **GEN)
    assert syn.shape == (300, gpu_model.adata.n_vars)
    assert (syn.obs["cell_type"] == "CD14+ Monocyte").all()
    counts = syn.X.toarray()
    assert np.isfinite(counts).all() and (counts >= 0).all()
    np.testing.assert_array_equal(counts, np.round(counts))
    again = gpu_model.generate(n=300, cell_type="CD14+ Monocyte", seed=0, **GEN)
    np.testing.assert_allclose(syn.obsm["X_latent"], again.obsm["X_latent"], atol=1e-5)


def test_interpolation_and_ddpm_on_the_gpu(gpu_model):
    traj = gpu_model.generate(n=110, interpolate={"cell_type": ("CD34+", "CD14+ Monocyte")}, **GEN)
    assert traj.n_obs == 110
    ddpm = gpu_model.generate(n=50, sampler="ddpm", n_steps=50, progress_bar=False)
    assert ddpm.n_obs == 50


def test_gpu_model_saves_and_loads_on_cpu(gpu_model, tmp_path):
    gpu_model.save(str(tmp_path / "model"), overwrite=True)
    loaded = ScDiffusion.load(str(tmp_path / "model"), adata=gpu_model.adata, accelerator="cpu")
    assert loaded.device.type == "cpu"
    assert loaded.generate(n=20, seed=0, **GEN).n_obs == 20
