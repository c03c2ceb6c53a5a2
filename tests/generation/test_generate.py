"""Every input form of generate, its output conventions, and its errors."""

import re

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import scvi_diffusion
from scvi_diffusion import ScDiffusion

from ..conftest import quiet_train

GEN = {"n_steps": 5, "progress_bar": False}
SYNTHETIC_NAME = re.compile(r"synthetic-([0-9a-f]{8})-(\d+)")


def name_token(cells: ad.AnnData) -> str:
    """The one token that names all of ``cells``, numbered in order (asserted)."""
    matches = [SYNTHETIC_NAME.fullmatch(name) for name in cells.obs_names]
    assert all(matches), list(cells.obs_names[:3])
    assert [int(m[2]) for m in matches] == list(range(cells.n_obs))
    (token,) = {m[1] for m in matches}
    return token


def check_output(model, syn, n):
    assert syn.n_obs == n
    assert list(syn.var_names) == list(model.adata.var_names)
    assert sparse.issparse(syn.X) and sparse.isspmatrix_csr(syn.X)
    values = syn.X.data
    assert np.all(values >= 0) and np.all(values == np.round(values))
    for key in model.condition_keys:
        assert isinstance(syn.obs[key].dtype, pd.CategoricalDtype)
        # the generated categories only, in the training order (scanpy needs cells per group)
        generated = set(syn.obs[key].dropna())
        training = list(model._categories(key))
        assert list(syn.obs[key].cat.categories) == [c for c in training if c in generated]
    assert syn.obsm["X_latent"].shape == (n, model.module.n_latent)
    assert syn.uns["scdiffusion"]["sampler"] in ("dpmpp_2m", "ddim", "ddpm")


def test_role_keywords(tiny_model):
    syn = tiny_model.generate(n=40, cell_type="CD19+ B", tissue="marrow", seed=1, **GEN)
    check_output(tiny_model, syn, 40)
    assert (syn.obs["cell_type"] == "CD19+ B").all()
    assert (syn.obs["tissue"] == "marrow").all()
    assert set(syn.obs["batch"]) <= {"b1", "b2"}  # batch from reference cells


def test_unrequested_conditions_follow_training_cells(tiny_model):
    syn = tiny_model.generate(n=300, cell_type="Dendritic", seed=0, **GEN)
    assert (syn.obs["cell_type"] == "Dendritic").all()
    assert set(syn.obs["tissue"]) == {"blood", "marrow"}


def test_dict_with_obs_names_and_aliases(tiny_model):
    by_column = tiny_model.generate(conditions={"cell_type": "CD56+ NK"}, n=10, seed=0, **GEN)
    assert (by_column.obs["cell_type"] == "CD56+ NK").all()
    per_cell = tiny_model.generate(
        conditions={"tissue": ["blood", "marrow", "blood"]}, seed=0, **GEN
    )
    assert list(per_cell.obs["tissue"]) == ["blood", "marrow", "blood"]
    assert by_column.n_obs == 10


def test_default_n(tiny_model):
    syn = tiny_model.generate(cell_type="CD34+", **GEN)
    assert syn.n_obs == 1000


def test_default_sampler(tiny_model):
    params = tiny_model.generate(n=5, seed=0, progress_bar=False).uns["scdiffusion"]
    assert params["sampler"] == "dpmpp_2m" and params["n_steps"] == 20
    ddim = tiny_model.generate(n=5, sampler="ddim", seed=0, progress_bar=False)
    assert ddim.uns["scdiffusion"]["n_steps"] == 50


def test_dataframe_keeps_row_order(tiny_model):
    frame = tiny_model.adata.obs[["cell_type", "tissue"]].iloc[::7]
    syn = tiny_model.generate(conditions=frame, seed=0, **GEN)
    check_output(tiny_model, syn, frame.shape[0])
    assert list(syn.obs["cell_type"].astype(str)) == list(frame["cell_type"].astype(str))
    assert list(syn.obs["tissue"].astype(str)) == list(frame["tissue"].astype(str))


def test_unconditional_generation_follows_composition(tiny_model):
    syn = tiny_model.generate(n=2000, seed=0, **GEN)
    real = tiny_model.adata.obs["cell_type"].value_counts(normalize=True)
    fake = syn.obs["cell_type"].value_counts(normalize=True)
    assert (real - fake.reindex(real.index)).abs().max() < 0.05


def test_normalized_output(tiny_model):
    syn = tiny_model.generate(n=20, cell_type="CD19+ B", output="normalized", seed=0, **GEN)
    assert isinstance(syn.X, np.ndarray)
    np.testing.assert_allclose(syn.X.sum(1), 1e4, rtol=1e-3)


def test_seed_reproducible_and_library_sizes(tiny_model):
    a = tiny_model.generate(n=50, cell_type="CD19+ B", seed=3, **GEN)
    b = tiny_model.generate(n=50, cell_type="CD19+ B", seed=3, **GEN)
    c = tiny_model.generate(n=50, cell_type="CD19+ B", seed=4, **GEN)
    np.testing.assert_array_equal(a.X.toarray(), b.X.toarray())
    assert (a.X != c.X).nnz > 0
    np.testing.assert_array_equal(a.obsm["X_latent"], b.obsm["X_latent"])


def test_each_call_names_its_cells_apart(tiny_model):
    """Same seed, same cells, new names: outputs of several calls concatenate cleanly."""
    a = tiny_model.generate(n=20, cell_type="CD19+ B", seed=3, **GEN)
    b = tiny_model.generate(n=20, cell_type="CD19+ B", seed=3, **GEN)
    np.testing.assert_array_equal(a.X.toarray(), b.X.toarray())
    assert name_token(a) != name_token(b)
    assert not set(a.obs_names) & set(b.obs_names)
    combined = ad.concat([a, b])
    assert combined.obs_names.is_unique and combined.n_obs == 40
    trajectory = tiny_model.generate(
        n=6, interpolate={"cell_type": ("CD34+", "CD14+ Monocyte")}, n_points=3, seed=3, **GEN
    )
    assert name_token(trajectory) not in {name_token(a), name_token(b)}


def test_ddpm_sampler_and_params(tiny_model):
    syn = tiny_model.generate(
        n=8, cell_type="CD19+ B", sampler="ddpm", n_steps=7, guidance_scale=1.5, seed=0
    )
    params = syn.uns["scdiffusion"]
    assert params["sampler"] == "ddpm" and params["n_steps"] == 7
    assert params["guidance_scale"] == {"cell_type": 1.5, "tissue": 1.5}
    assert params["seed"] == 0


def test_per_condition_guidance_scale(tiny_model):
    syn = tiny_model.generate(n=4, guidance_scale={"cell_type": 0.5}, seed=0, **GEN)
    assert syn.uns["scdiffusion"]["guidance_scale"]["cell_type"] == 0.5


def test_unregistered_obs_column_trains_a_classifier_on_demand(tiny_model):
    syn = tiny_model.generate(conditions={"cell_type": "CD19+ B", "phase": "S"}, n=20, **GEN)
    assert (syn.obs["phase"] == "S").all()
    assert "phase" in tiny_model._auxiliary_guidance
    assert any(k.startswith("classifier_phase") for k in tiny_model.history)


def test_interpolation_output(tiny_model):
    traj = tiny_model.generate(
        n=33, interpolate={"cell_type": ("CD34+", "CD14+ Monocyte")}, n_points=11, seed=0, **GEN
    )
    assert traj.n_obs == 33
    weights = traj.obs["interpolation_weight"].to_numpy()
    np.testing.assert_allclose(np.unique(weights), np.linspace(0, 1, 11))
    assert np.all(np.diff(weights) >= 0)
    assert (traj.obs["interpolation_source"] == "CD34+").all()
    assert (traj.obs["interpolation_target"] == "CD14+ Monocyte").all()
    assert traj.uns["scdiffusion"]["interpolation"]["start_time"] == 600


def test_unseen_combination_warns(tiny_model):
    adata = tiny_model.adata
    counts = pd.crosstab(adata.obs["cell_type"], adata.obs["tissue"])
    assert (counts > 0).all().all()  # every combination seen: no warning expected here
    syn = tiny_model.generate(n=5, cell_type="CD34+", tissue="blood", **GEN)
    assert syn.n_obs == 5


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"cell_type": "Neuron"}, ValueError, "Unknown value.*Valid values"),
        ({"conditions": {"organ": "lung"}}, ValueError, "Unknown condition 'organ'"),
        ({"n": 0}, ValueError, "positive integer"),
        ({"n": -3}, ValueError, "positive integer"),
        ({"n": 2.5}, TypeError, "positive integer"),
        ({"n": "10"}, TypeError, "positive integer"),
        ({"sampler": "euler"}, ValueError, "Unknown sampler"),
        ({"output": "log"}, ValueError, "Unknown output"),
        ({"n_steps": 1001}, ValueError, "at most T=1000"),
        ({"n_steps": 0}, ValueError, "positive integer"),
        ({"batch_size": 0}, ValueError, "positive integer"),
        ({"seed": "x"}, TypeError, "seed"),
        ({"cell_type": {}}, TypeError, "must be category labels.*Valid values"),
        ({"guidance_scale": -1.0}, ValueError, "non-negative"),
        ({"guidance_scale": {"organ": 1.0}}, ValueError, "Unknown condition"),
        ({"conditions": ["CD19+ B"]}, TypeError, "conditions"),
        ({"cell_type": "CD19+ B", "conditions": {"cell_type": "CD34+"}}, ValueError, "twice"),
        ({"conditions": {"cell_type": ["CD19+ B", None]}}, ValueError, "missing values"),
        ({"interpolate": {"cell_type": ("CD34+",)}}, ValueError, "pair"),
        ({"interpolate": {"cell_type": ("CD34+", "Neuron")}}, ValueError, "Unknown value"),
        (
            {"interpolate": {"cell_type": ("CD34+", "CD19+ B")}, "n_points": 1},
            ValueError,
            "n_points",
        ),
    ],
)
def test_bad_generate_arguments(tiny_model, kwargs, error, message):
    obs_before = tiny_model.adata.obs.copy()
    state_before = {k: v.clone() for k, v in tiny_model.module.state_dict().items()}
    with pytest.raises(error, match=message):
        tiny_model.generate(**{"n_steps": 5, "progress_bar": False, **kwargs})
    pd.testing.assert_frame_equal(tiny_model.adata.obs, obs_before)
    for key, value in tiny_model.module.state_dict().items():
        assert (value == state_before[key]).all()


def test_n_conflicting_with_dataframe(tiny_model):
    frame = tiny_model.adata.obs[["cell_type"]].iloc[:10]
    with pytest.raises(ValueError, match="does not match the 10 rows"):
        tiny_model.generate(n=5, conditions=frame, **GEN)


def test_role_not_registered(pbmc):
    ScDiffusion.setup_anndata(pbmc, cell_type_key="cell_type")
    model = quiet_train(ScDiffusion(pbmc, n_latent=4), max_epochs=1)
    with pytest.raises(ValueError, match="needs a registered tissue column"):
        model.generate(n=3, tissue="lung", **GEN)


def test_generate_before_training(pbmc):
    ScDiffusion.setup_anndata(pbmc, cell_type_key="cell_type")
    model = ScDiffusion(pbmc)
    with pytest.raises(ValueError, match="not trained"):
        model.generate(n=3)


def test_unconditional_model(pbmc):
    ScDiffusion.setup_anndata(pbmc)
    model = quiet_train(ScDiffusion(pbmc, n_latent=4), max_epochs=2)
    assert not any(k.startswith("classifier") for k in model.history)
    syn = model.generate(n=12, seed=0, **GEN)
    assert syn.n_obs == 12 and list(syn.obs.columns) == []
    with pytest.raises(ValueError, match="Registered conditions: none"):
        model.generate(n=3, conditions={"organ": "lung"}, **GEN)


def test_training_history_and_epoch_cap(tiny_model):
    history = tiny_model.history
    for stage in ("vae", "diffusion", "classifier"):
        curve = history[f"{stage}_train_loss"]
        assert len(curve) == 3  # max_epochs=3 caps every stage
    assert "vae_elbo_train" in history
    assert "classifier_accuracy_condition_cell_type_train" in history


def test_latent_representation(tiny_model):
    latent = tiny_model.get_latent_representation()
    assert latent.shape == (tiny_model.adata.n_obs, 6)


def test_bundled_data_counts():
    adata = scvi_diffusion.data.pbmc68k()
    assert adata.shape == (700, 765)
    assert set(adata.obs.columns) == {"cell_type", "phase", "louvain"}
    assert np.all(adata.X.data == np.round(adata.X.data))
    assert adata.obs["cell_type"].nunique() == 10
