"""Bad input, tried systematically (hypothesis): AnnData forms and generate arguments.

Every case either works (with correct output) or raises a ValueError/TypeError from
scvi-diffusion's own checks, never an error from deep inside torch, pandas or NumPy, and the
user's AnnData is left as it was (beyond scvi-tools' registration columns).
"""

import tempfile
import traceback
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from scipy import sparse

from scvi_diffusion import ScDiffusion

from ..conftest import quiet_train

PROPERTY = settings(
    deadline=None,
    derandomize=True,  # the same cases on every run, so CI is reproducible
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# anndata (0.12) refuses COO matrices itself, in X and in layers: test_coo_never_reaches_the_model
FORMATS = ("dense", "csr", "csc")
DTYPES = ("float32", "float64", "int32", "int64", "uint16")
CONDITIONS = (
    "none",
    "categorical",
    "unused levels",
    "strings",
    "integers",
    "booleans",
    "missing value",
)
FORMS = ("in memory", "backed", "view")


def _rarely():
    """True in about one case in four."""
    return st.integers(0, 3).map(lambda i: i == 3)


@st.composite
def anndata_cases(draw):
    return {
        # hypothesis starts from the first choices: typical data first, edge cases after
        "n_obs": draw(st.sampled_from([40, 9, 3, 2, 1])),
        "n_vars": draw(st.sampled_from([30, 7, 2, 1])),
        "format": draw(st.sampled_from(FORMATS)),
        "dtype": draw(st.sampled_from(DTYPES)),
        "zero cells": draw(_rarely()),
        "zero genes": draw(st.booleans()),
        "condition": draw(st.sampled_from(CONDITIONS)),
        "duplicate obs names": draw(_rarely()),
        "duplicate var names": draw(_rarely()),
        "form": draw(st.sampled_from(FORMS)),
        "seed": draw(st.integers(0, 1000)),
    }


def _condition_column(kind, n, rng):
    values = rng.choice(["a", "b"], size=n)
    if kind == "unused levels":
        return pd.Categorical(values, categories=["a", "b", "never seen"])
    if kind == "strings":
        return values.astype(object)
    if kind == "integers":
        return np.where(values == "a", 1, 2)
    if kind == "booleans":
        return values == "a"
    column = pd.Categorical(values)
    if kind == "missing value":
        column[-1] = np.nan
    return column


def make_anndata(case, folder: Path) -> ad.AnnData:
    rng = np.random.default_rng(case["seed"])
    n_rows = case["n_obs"] + (2 if case["form"] == "view" else 0)
    counts = rng.poisson(3.0, size=(n_rows, case["n_vars"]))
    if case["zero cells"]:
        counts[0] = 0
    if case["zero genes"]:
        counts[:, 0] = 0
    counts = counts.astype(case["dtype"])
    X = (
        counts
        if case["format"] == "dense"
        else getattr(sparse, f"{case['format']}_matrix")(counts)
    )
    obs_names = [f"cell{i}" for i in range(n_rows)]
    var_names = [f"gene{j}" for j in range(case["n_vars"])]
    if case["duplicate obs names"]:
        obs_names[-1] = obs_names[0]
    if case["duplicate var names"]:
        var_names[-1] = var_names[0]
    obs = pd.DataFrame(index=obs_names)
    if case["condition"] != "none":
        obs["label"] = _condition_column(case["condition"], n_rows, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anndata's warnings on duplicate names
        adata = ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=var_names))
        if case["form"] == "view":
            adata = adata[1 : n_rows - 1]
        elif case["form"] == "backed":
            adata.write_h5ad(folder / "data.h5ad")
            adata = ad.read_h5ad(folder / "data.h5ad", backed="r")
    return adata


def _dense_X(adata):
    X = adata.X[:] if adata.isbacked else adata.X
    return X.toarray() if sparse.issparse(X) else np.asarray(X)


def snapshot(adata):
    return {
        "X": _dense_X(adata).copy(),
        "X type": type(adata.X).__name__,
        "obs": adata.obs.copy(),
        "var": adata.var.copy(),
        "uns": set(adata.uns),
        "layers": set(adata.layers),
        "is_view": adata.is_view,
    }


def assert_untouched(adata, before):
    np.testing.assert_array_equal(_dense_X(adata), before["X"])
    assert type(adata.X).__name__ == before["X type"]
    assert adata.is_view == before["is_view"]
    user_columns = [c for c in adata.obs.columns if not c.startswith("_scvi")]
    pd.testing.assert_frame_equal(adata.obs[user_columns], before["obs"])
    pd.testing.assert_frame_equal(adata.var, before["var"])
    assert {k for k in adata.uns if not k.startswith("_scvi")} == before["uns"]
    assert set(adata.layers) == before["layers"]


def assert_clear(error: Exception):
    """The error was raised by scvi-diffusion's own checks and says what is wrong."""
    origin = traceback.extract_tb(error.__traceback__)[-1].filename
    assert "scvi_diffusion" in origin, f"{type(error).__name__} from {origin}: {error}"
    assert len(str(error)) > 20, str(error)


REJECTED = object()


def attempt(argument: str, call):
    """``call()`` with warnings silenced: its result, or ``REJECTED`` if it raised a clear
    ValueError/TypeError from scvi-diffusion's checks. Records which, per argument."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = call()
    except (ValueError, TypeError) as error:
        assert_clear(error)
        event(f"{argument}: rejected")
        return REJECTED
    event(f"{argument}: accepted")
    return result


def check_case(case) -> str:
    """Set up, train and generate on the case's AnnData; return what happened."""
    with tempfile.TemporaryDirectory() as folder:
        adata = make_anndata(case, Path(folder))
        before = snapshot(adata)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ScDiffusion.setup_anndata(
                    adata, cell_type_key="label" if case["condition"] != "none" else None
                )
                model = ScDiffusion(adata, n_latent=2, n_hidden=8, denoiser_width=16)
                quiet_train(model, max_epochs=1, batch_size=16, latent_batch_size=16)
                synthetic = model.generate(n=3, n_steps=2, seed=0, progress_bar=False)
        except (ValueError, TypeError) as error:
            assert_clear(error)
            outcome = f"rejected: {str(error)[:60]}"
        else:
            outcome = "trained and generated"
            assert synthetic.shape == (3, adata.n_vars)
            assert list(synthetic.var_names) == list(adata.var_names)
            counts = synthetic.X.toarray()
            assert np.isfinite(counts).all() and (counts >= 0).all()
            assert (counts == np.round(counts)).all()
            if case["condition"] != "none":
                assert set(synthetic.obs["label"].astype(str)) <= set(
                    adata.obs["label"].astype(str)
                )
        assert_untouched(adata, before)
        if adata.isbacked:
            adata.file.close()
    return outcome


@settings(PROPERTY, max_examples=200)
@given(case=anndata_cases())
def test_any_anndata_trains_and_generates_or_is_rejected_clearly(case):
    event(check_case(case))


TYPICAL = {
    "n_obs": 40,
    "n_vars": 30,
    "zero cells": False,
    "zero genes": True,
    "duplicate obs names": False,
    "duplicate var names": False,
    "seed": 0,
}


@pytest.mark.parametrize("form", ["in memory", "backed"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("matrix_format", FORMATS)
def test_every_matrix_format_dtype_and_storage_trains(matrix_format, dtype, form):
    """The grid hypothesis may not reach: all of them work, with a condition of each kind."""
    index = FORMATS.index(matrix_format) * len(DTYPES) + DTYPES.index(dtype)
    condition = [c for c in CONDITIONS if c != "missing value"][index % (len(CONDITIONS) - 1)]
    case = {**TYPICAL, "format": matrix_format, "dtype": dtype, "form": form}
    assert check_case({**case, "condition": condition}) == "trained and generated"


@pytest.mark.parametrize(
    ("edge", "outcome"),
    [
        ({"duplicate obs names": True}, "trained and generated"),
        ({"duplicate var names": True}, "trained and generated"),
        ({"n_obs": 2, "n_vars": 2, "zero genes": False}, "trained and generated"),
        ({"condition": "unused levels"}, "trained and generated"),
        ({"zero cells": True}, "rejected: 1 cells have no counts"),
        ({"n_obs": 1}, "rejected: Training needs at least 2 cells"),
        ({"n_vars": 1}, "rejected: The AnnData has 40 cells x 1 genes"),
        ({"form": "view"}, "rejected: The AnnData is a view"),
        ({"condition": "missing value"}, "rejected: adata.obs['label'] has 1 missing"),
    ],
)
def test_edge_cases(edge, outcome):
    case = {**TYPICAL, "format": "csr", "dtype": "float32", "form": "in memory"}
    case = {"condition": "categorical", **case, **edge}
    assert check_case(case).startswith(outcome)


JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.text(max_size=4),
    st.lists(st.integers(-2, 2), max_size=3),
    st.tuples(st.sampled_from(["CD19+ B", "CD34+", "x"]), st.sampled_from(["CD14+ Monocyte", 1])),
    st.dictionaries(
        st.sampled_from(["cell_type", "tissue", "batch", "organ"]),
        st.one_of(st.sampled_from(["CD19+ B", "blood", "b1"]), st.integers(), st.none()),
        max_size=2,
    ),
    st.just(np.arange(3)),
    st.just(pd.DataFrame({"cell_type": ["CD19+ B"] * 2})),
    st.just(object()),
    st.just(b"bytes"),
)
GENERATE_ARGUMENTS = (
    "n",
    "cell_type",
    "tissue",
    "conditions",
    "interpolate",
    "n_points",
    "start_time",
    "guidance_scale",
    "sampler",
    "n_steps",
    "output",
    "batch_size",
    "seed",
    "progress_bar",
    "out",
)


@settings(PROPERTY, max_examples=300)
@given(argument=st.sampled_from(GENERATE_ARGUMENTS), value=JUNK)
def test_generate_with_any_argument_value(tiny_model, argument, value):
    obs = tiny_model.adata.obs.copy()
    kwargs = {"n": 4, "n_steps": 2, "progress_bar": False, "seed": 0, argument: value}
    if argument == "interpolate":
        kwargs["n"] = 6
    synthetic = attempt(argument, lambda: tiny_model.generate(**kwargs))
    if synthetic is not REJECTED:
        assert isinstance(synthetic, ad.AnnData) and synthetic.n_obs > 0
        assert list(synthetic.var_names) == list(tiny_model.adata.var_names)
    pd.testing.assert_frame_equal(tiny_model.adata.obs, obs)


@pytest.mark.parametrize("case", ["unused category", "missing value"])
def test_generate_an_unused_or_missing_category(pbmc, case):
    pbmc.obs["cell_type"] = pbmc.obs["cell_type"].cat.add_categories(["Neuron"])
    ScDiffusion.setup_anndata(pbmc, cell_type_key="cell_type")
    model = quiet_train(ScDiffusion(pbmc, n_latent=2), max_epochs=1)
    value, message = {
        "unused category": ("Neuron", "No training cell has cell_type='Neuron'"),
        "missing value": (np.nan, "missing"),
    }[case]
    with pytest.raises(ValueError, match=message) as error:
        model.generate(n=3, cell_type=value, n_steps=2, progress_bar=False)
    assert_clear(error.value)


def test_coo_never_reaches_the_model():
    """anndata refuses COO matrices, so a COO case cannot be built; if a future anndata accepts
    them, this fails and COO joins the property test's formats."""
    with pytest.raises(ValueError, match="Only CSR and CSC"):
        ad.AnnData(X=sparse.coo_matrix(np.ones((3, 2))))


def _small_anndata():
    case = {**TYPICAL, "format": "csr", "dtype": "float32", "form": "in memory"}
    return make_anndata({**case, "condition": "categorical", "zero genes": False}, Path("."))


SETUP_ARGUMENTS = (
    "layer",
    "cell_type_key",
    "tissue_key",
    "condition_keys",
    "batch_key",
    "continuous_condition_keys",
)


@settings(PROPERTY, max_examples=150)
@given(argument=st.sampled_from(SETUP_ARGUMENTS), value=JUNK)
def test_setup_anndata_with_any_argument_value(argument, value):
    adata = _small_anndata()
    before = snapshot(adata)
    if (
        attempt(argument, lambda: ScDiffusion.setup_anndata(adata, **{argument: value}))
        is REJECTED
    ):
        assert not any(c.startswith("_scvi") for c in adata.obs.columns)
    assert_untouched(adata, before)


MODEL_ARGUMENTS = (
    "n_latent",
    "n_hidden",
    "n_layers",
    "dropout_rate",
    "denoiser_width",
    "guidance_horizon",
    "n_timesteps",
    "beta_start",
    "beta_end",
    "autoencoder",
    "gene_likelihood",
    "dispersion",
    "guidance",
    "condition_dropout",
)


@settings(PROPERTY, max_examples=250)
@given(argument=st.sampled_from(MODEL_ARGUMENTS), value=JUNK)
def test_model_with_any_argument_value(argument, value):
    adata = _small_anndata()
    ScDiffusion.setup_anndata(adata, cell_type_key="label")
    attempt(argument, lambda: ScDiffusion(adata, **{argument: value}))


TRAIN_ARGUMENTS = (
    "max_epochs",
    "stages",
    "vae_epochs",
    "diffusion_epochs",
    "classifier_epochs",
    "diffusion_steps",
    "classifier_steps",
    "progress_bar",
    "train_size",
    "validation_size",
    "batch_size",
    "latent_batch_size",
    "ema_decay",
)


@settings(PROPERTY, max_examples=60)
@given(argument=st.sampled_from(TRAIN_ARGUMENTS), value=JUNK)
def test_train_with_any_argument_value(argument, value):
    adata = _small_anndata()
    ScDiffusion.setup_anndata(adata, cell_type_key="label")
    model = ScDiffusion(adata, n_latent=2, n_hidden=8, denoiser_width=16)
    # every stage's epochs are set, so a valid value of any one argument trains briefly
    epochs = {f"{s}_epochs": 1 for s in ("vae", "diffusion", "classifier")}
    kwargs = {"max_epochs": 1, **epochs, "batch_size": 16, "latent_batch_size": 16}
    # a stage's budget is steps or epochs, not both
    kwargs.pop(argument.replace("_steps", "_epochs"), None)
    kwargs[argument] = value
    if attempt(argument, lambda: quiet_train(model, **kwargs)) is REJECTED:
        assert model.trained_stages_ == []
    else:
        assert model.is_trained_
