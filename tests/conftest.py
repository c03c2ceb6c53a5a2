import json
import os
import re
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

# One torch thread in every test process: training and sampling on a CPU are then bitwise
# reproducible on a given machine (the thread count changes the sums), the stages' load
# follower has nothing to change, and `make test` runs one such process per core
# (pytest-xdist) instead of two threads that wait for each other on tiny operations.
if torch.get_num_threads() != 1:
    torch.set_num_threads(1)

# Models that tests in several modules share: under `pytest -n` (pytest-xdist) the modules
# that use them run in one process, which trains each of them once; every other module runs
# whole in one process too, with its module-scoped models.
SHARED_MODELS = ("trained_model", "two_factor_model")


def _module_of(nodeid: str) -> str:
    """The test module (its path from the repository root) of a node id."""
    return nodeid.split("::", 1)[0]


def _modules_of_shared_models() -> set[str]:
    """The test modules (paths from the repository root, as in node ids) that name a shared
    model: xdist's controller schedules by node id, before any test is collected."""
    root = Path(__file__).resolve().parents[1]
    pattern = re.compile(r"\b(" + "|".join(SHARED_MODELS) + r")\b")
    return {
        path.relative_to(root).as_posix()
        for path in Path(__file__).parent.rglob("test_*.py")
        if pattern.search(path.read_text())
    }


def pytest_xdist_make_scheduler(config, log):
    """Whole modules to a process, and the modules of the shared models together."""
    from xdist.scheduler import LoadScopeScheduling

    shared = _modules_of_shared_models()

    class ModulesAndSharedModels(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = _module_of(nodeid)
            return "shared models" if module in shared else module

    return ModulesAndSharedModels(config, log)


def pytest_collection_modifyitems(config, items):
    """The modules with integration or distributed tests (the slow ones) first, in their
    order, so that ``pytest -n`` hands out the long modules before the short ones that fill
    the processes' last minutes (longest first balances the processes)."""
    slow = {
        _module_of(item.nodeid)
        for item in items
        if "integration" in item.keywords or "distributed" in item.keywords
    }
    items.sort(key=lambda item: _module_of(item.nodeid) not in slow)


# the shared data (../shared beside the repository, as in CI)
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PBMC3K = SHARED_DATA / "pbmc3k_raw.h5ad"
needs_pbmc3k = pytest.mark.skipif(
    not PBMC3K.is_file(), reason=f"the shared PBMC3K file is not at {PBMC3K}"
)

QUIET = {"enable_progress_bar": False, "enable_model_summary": False, "logger": None}

# The training seed of the models whose measured figures the behavioural tests bound (0; other
# seeds are for benchmarks/test_bounds.py, which measures the spread the bounds come from), and
# where the tests write those figures (unset: nowhere).
TRAINING_SEED = int(os.environ.get("SCVI_DIFFUSION_TEST_SEED", "0"))
FIGURES_FILE = os.environ.get("SCVI_DIFFUSION_TEST_FIGURES")


@pytest.fixture
def figures(request):
    """What a behavioural test measures before it asserts, name to number; with
    ``SCVI_DIFFUSION_TEST_FIGURES`` set, appended to that file as one JSON line (whether the
    assertions pass or not), for ``benchmarks/test_bounds.py``."""
    measured: dict[str, float] = {}
    yield measured
    if FIGURES_FILE and measured:
        line = {"test": request.node.nodeid, "seed": TRAINING_SEED}
        line |= {name: float(value) for name, value in measured.items()}
        with open(FIGURES_FILE, "a") as file:
            file.write(json.dumps(line) + "\n")


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
    scvi.settings.seed = TRAINING_SEED
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
    scvi.settings.seed = TRAINING_SEED
    adata = two_factor_split[0].copy()
    ScDiffusion.setup_anndata(adata, cell_type_key="cell_type", tissue_key="tissue")
    return quiet_train(ScDiffusion(adata))
