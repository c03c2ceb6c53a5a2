import warnings
from pathlib import Path

import numpy as np
import pytest
import scvi
import torch
from threadpoolctl import threadpool_limits

import scvi_diffusion
from scvi_diffusion import ScDiffusion
from scvi_diffusion.metrics import stratified_split

warnings.filterwarnings("ignore", category=UserWarning, module="lightning")

# the shared data (../shared beside the repository, as in CI)
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PBMC3K = SHARED_DATA / "pbmc3k_raw.h5ad"
needs_pbmc3k = pytest.mark.skipif(
    not PBMC3K.is_file(), reason=f"the shared PBMC3K file is not at {PBMC3K}"
)

QUIET = {"enable_progress_bar": False, "enable_model_summary": False, "logger": None}


def same_state(a: dict, b: dict) -> bool:
    """Whether two state dicts hold equal tensors, name for name."""
    return a.keys() == b.keys() and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


def quiet_train(model, **kwargs):
    """Train with a small budget and no progress output."""
    model.train(enable_progress_bar=False, enable_model_summary=False, **kwargs)
    return model


@pytest.fixture(scope="module")
def one_blas_thread():
    """One BLAS thread for a module of metric tests: their matrices are small, and extra
    threads only fight other processes for cores (an SVD of 700 x 765 took seconds instead of
    0.06 s next to a training job)."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture
def pbmc():
    return scvi_diffusion.data.pbmc68k()


def _with_extra_columns(adata):
    rng = np.random.default_rng(0)
    adata.obs["tissue"] = rng.choice(["blood", "marrow"], size=adata.n_obs)
    adata.obs["tissue"] = adata.obs["tissue"].astype("category")
    adata.obs["batch"] = rng.choice(["b1", "b2"], size=adata.n_obs)
    return adata


@pytest.fixture(scope="session")
def tiny_model():
    """Cell type + tissue + batch, classifier guidance (all three stages); a few epochs: for
    API behaviour, not fidelity."""
    scvi.settings.seed = 0
    adata = _with_extra_columns(scvi_diffusion.data.pbmc68k())
    ScDiffusion.setup_anndata(
        adata, cell_type_key="cell_type", tissue_key="tissue", batch_key="batch"
    )
    model = ScDiffusion(adata, n_latent=6, guidance="classifier")
    return quiet_train(model, max_epochs=3)


@pytest.fixture(scope="session")
def pbmc_split():
    """The fidelity protocol's split: 70% training cells, 30% held out, by cell type."""
    return stratified_split(scvi_diffusion.data.pbmc68k(), "cell_type", random_state=0)


@pytest.fixture(scope="session")
def trained_model(pbmc_split):
    """Cell type only, default training budget, on the 70% split: for fidelity checks."""
    scvi.settings.seed = 0
    adata = pbmc_split[0].copy()
    ScDiffusion.setup_anndata(adata, cell_type_key="cell_type")
    model = ScDiffusion(adata)
    return quiet_train(model)


UNSEEN = {"cell_type": "CD19+ B", "tissue": "stimulated"}


@pytest.fixture(scope="session")
def two_factor_split():
    """Two known factors; every stimulated B cell held out of training."""
    adata = scvi_diffusion.data.pbmc68k_two_factor()
    held = (adata.obs["cell_type"] == UNSEEN["cell_type"]) & (
        adata.obs["tissue"] == UNSEEN["tissue"]
    )
    return adata[~held].copy(), adata[held].copy()


@pytest.fixture(scope="session")
def two_factor_model(two_factor_split):
    """Defaults (classifier-free guidance, which composes conditions), cell type and tissue,
    default training budget, without the unseen combination."""
    scvi.settings.seed = 0
    adata = two_factor_split[0].copy()
    ScDiffusion.setup_anndata(adata, cell_type_key="cell_type", tissue_key="tissue")
    return quiet_train(ScDiffusion(adata))
